//! The HTTP surfaces of shopgraph.
//!
//! [`openai`] serves the shop's language model under the OpenAI chat-completions
//! protocol, so that one GPU host can run the model for many shopgraph replicas (each
//! configured with `--llm-url`), and so that any OpenAI client can use it.

pub mod openai;
