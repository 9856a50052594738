//! Prompt templates: text files in the repository's `prompts/` folder, compiled into
//! the binary, optionally replaced at run time by the files of another folder (a shop
//! tunes its prompts without a rebuild).
//!
//! A template names its variables as `{{name}}`; rendering fills every one of them and
//! refuses a template that asks for a variable it was not given. `prompts/replies.txt`
//! holds short fixed replies, one `key.language = text` a line.

use std::collections::HashMap;
use std::path::Path;

use crate::{ChatMessage, Role};

/// The bundled prompts, by name (file name without `.md`).
const BUNDLED: &[(&str, &str)] = &[
    ("understand", include_str!("../../../prompts/understand.md")),
    ("answer", include_str!("../../../prompts/answer.md")),
    ("extract", include_str!("../../../prompts/extract.md")),
    ("summarise", include_str!("../../../prompts/summarise.md")),
];
const BUNDLED_REPLIES: &str = include_str!("../../../prompts/replies.txt");

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PromptError {
    #[error("no prompt named {0:?}")]
    Unknown(String),
    #[error("prompt {prompt:?} needs the variable {{{{{variable}}}}}, which was not given")]
    Missing { prompt: String, variable: String },
    #[error("prompt {prompt:?} has an unclosed {{{{ at byte {at}")]
    Unclosed { prompt: String, at: usize },
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

/// The templates and fixed replies in use.
#[derive(Clone, Debug)]
pub struct Prompts {
    templates: HashMap<String, String>,
    replies: HashMap<String, String>,
}

impl Prompts {
    /// The prompts compiled into the binary.
    pub fn bundled() -> Prompts {
        let templates = BUNDLED.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let replies = parse_replies(BUNDLED_REPLIES, "replies.txt").expect("bundled replies parse");
        Prompts { templates, replies }
    }

    /// The bundled prompts, with any `NAME.md` and `replies.txt` in `dir` in place of
    /// theirs. A file whose name is not a known prompt is an error (a typo would
    /// otherwise be silently ignored).
    pub fn with_overrides(dir: &Path) -> Result<Prompts, PromptError> {
        let mut prompts = Prompts::bundled();
        let file_err =
            |path: &Path, why: String| PromptError::File { path: path.display().to_string(), why };
        let entries = std::fs::read_dir(dir).map_err(|e| file_err(dir, e.to_string()))?;
        for entry in entries {
            let path = entry.map_err(|e| file_err(dir, e.to_string()))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name == "README.md" || !path.is_file() {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| file_err(&path, e.to_string()))?;
            if name == "replies.txt" {
                prompts.replies.extend(parse_replies(&text, &name)?);
            } else if let Some(stem) = name.strip_suffix(".md")
                && prompts.templates.contains_key(stem)
            {
                prompts.templates.insert(stem.to_owned(), text);
            } else {
                return Err(file_err(&path, "not a prompt shopgraph knows".into()));
            }
        }
        Ok(prompts)
    }

    /// Renders the template `name` with `vars`.
    pub fn render(&self, name: &str, vars: &[(&str, &str)]) -> Result<String, PromptError> {
        let template =
            self.templates.get(name).ok_or_else(|| PromptError::Unknown(name.to_owned()))?;
        fill(name, template, vars)
    }

    /// Renders the template `name` into chat messages: the text after a `### system`
    /// line is the system message, after `### user` the user's. Everything fixed comes
    /// first, so that consecutive requests share their prefix.
    pub fn render_messages(
        &self,
        name: &str,
        vars: &[(&str, &str)],
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let text = self.render(name, vars)?;
        let mut messages: Vec<ChatMessage> = Vec::new();
        for line in text.lines() {
            let role = match line.trim_end() {
                "### system" => Some(Role::System),
                "### user" => Some(Role::User),
                "### assistant" => Some(Role::Assistant),
                _ => None,
            };
            match (role, messages.last_mut()) {
                (Some(role), _) => messages.push(ChatMessage::new(role, String::new())),
                (None, Some(last)) => {
                    if !last.content.is_empty() {
                        last.content.push('\n');
                    }
                    last.content.push_str(line);
                }
                (None, None) if line.trim().is_empty() => {}
                (None, None) => messages.push(ChatMessage::new(Role::User, line)),
            }
        }
        for m in &mut messages {
            m.content = m.content.trim().to_owned();
        }
        Ok(messages)
    }

    /// The fixed reply `key` in `language` (falling back to English), rendered.
    pub fn reply(
        &self,
        key: &str,
        language: &str,
        vars: &[(&str, &str)],
    ) -> Result<String, PromptError> {
        let template = self
            .replies
            .get(&format!("{key}.{language}"))
            .or_else(|| self.replies.get(&format!("{key}.en")))
            .ok_or_else(|| PromptError::Unknown(format!("{key}.{language}")))?;
        fill(key, template, vars)
    }
}

fn fill(name: &str, template: &str, vars: &[(&str, &str)]) -> Result<String, PromptError> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| PromptError::Unclosed {
            prompt: name.to_owned(),
            at: template.len() - rest.len() + open,
        })?;
        let variable = after[..close].trim();
        let value =
            vars.iter().find(|(k, _)| *k == variable).map(|(_, v)| *v).ok_or_else(|| {
                PromptError::Missing { prompt: name.to_owned(), variable: variable.to_owned() }
            })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `key.language = text` lines; `#` starts a comment line; `\n` in a text is a newline.
fn parse_replies(text: &str, file: &str) -> Result<HashMap<String, String>, PromptError> {
    let mut replies = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(" = ").ok_or_else(|| PromptError::File {
            path: format!("{file}:{}", n + 1),
            why: "expected `key.language = text`".into(),
        })?;
        replies.insert(key.trim().to_owned(), value.trim().replace("\\n", "\n"));
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_named_variables_and_refuses_missing_ones() {
        assert_eq!(
            fill("t", "Hi {{ name }}, {{n}}!", &[("name", "Ada"), ("n", "3")]).unwrap(),
            "Hi Ada, 3!"
        );
        assert_eq!(
            fill("t", "Hi {{name}}", &[]).unwrap_err(),
            PromptError::Missing { prompt: "t".into(), variable: "name".into() }
        );
        assert!(matches!(
            fill("t", "Hi {{name", &[("name", "x")]),
            Err(PromptError::Unclosed { .. })
        ));
    }

    #[test]
    fn bundled_prompts_render_and_replies_fall_back_to_english() {
        let prompts = Prompts::bundled();
        assert!(matches!(prompts.render("nope", &[]), Err(PromptError::Unknown(_))));
        let en = prompts.reply("handoff", "en", &[]).unwrap();
        let fr = prompts.reply("handoff", "fr", &[]).unwrap();
        assert_eq!(en, fr);
        let zh = prompts.reply("handoff", "zh", &[]).unwrap();
        assert_ne!(en, zh);
    }

    #[test]
    fn templates_split_into_system_and_user_messages() {
        let prompts = Prompts::bundled();
        let m = prompts.render_messages("understand", &[("message", "How much is Dune?")]).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, Role::System);
        assert!(!m[0].content.contains("Dune?"));
        assert_eq!(m[1], ChatMessage::new(Role::User, "How much is Dune?"));
    }

    #[test]
    fn overrides_replace_known_prompts_and_refuse_unknown_files() {
        let dir = std::env::temp_dir().join(format!("shopgraph-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("answer.md"), "Answer {{question}} briefly.").unwrap();
        let prompts = Prompts::with_overrides(&dir).unwrap();
        assert_eq!(
            prompts.render("answer", &[("question", "why")]).unwrap(),
            "Answer why briefly."
        );
        std::fs::write(dir.join("answr.md"), "typo").unwrap();
        assert!(matches!(Prompts::with_overrides(&dir), Err(PromptError::File { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
