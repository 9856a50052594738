//! `shopgraph events append`: ingest events from a pipe, one JSON object a line (the
//! `events.jsonl` format), acknowledging each on stdout once it is durably stored.
//!
//! Output, one line per input line: `ack KEY SEQ` (stored now), `dup KEY SEQ` (stored
//! before: a retry), or `error LINE: REASON` (refused; nothing of it was written). A
//! producer that is cut off re-sends everything not acknowledged; the keys make that
//! safe.

use std::collections::HashMap;
use std::io::Write;

use clap::Subcommand;
use shopgraph_core::event::NewEvent;
use shopgraph_core::{ProductId, UserId};
use shopgraph_import::jsonl::parse_event_line;
use shopgraph_store::{Store, StoreError};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::DbArgs;

#[derive(Subcommand)]
pub(crate) enum EventsCommand {
    /// Append events read from stdin.
    Append {
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(crate) async fn run(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Append { db } = command;
    let store = db.open().await?;
    let mut resolver = Resolver::default();
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut out = std::io::stdout().lock();
    let mut line_no = 0u64;
    while let Some(raw) = lines.next_segment().await? {
        line_no += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(&raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match append_line(&store, &mut resolver, raw).await {
            Ok(reply) => reply,
            // The database failing is not the input's fault: stop, acknowledging nothing more.
            Err(e) if !e.is_user_error() => return Err(e.into()),
            Err(e) => format!("error {line_no}: {e}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

async fn append_line(
    store: &Store,
    resolver: &mut Resolver,
    raw: &[u8],
) -> Result<String, StoreError> {
    let record = parse_event_line(raw).map_err(StoreError::Invalid)?;
    // Checked here so both backends answer alike (PostgreSQL would refuse a NUL itself).
    shopgraph_core::check_identifier("user id", &record.user).map_err(StoreError::Invalid)?;
    if let Some(sku) = &record.product {
        shopgraph_core::check_identifier("sku", sku).map_err(StoreError::Invalid)?;
    }
    let user = resolver.user(store, &record.user).await?;
    let product = match &record.product {
        Some(sku) => Some(resolver.product(store, sku).await?),
        None => None,
    };
    let event = NewEvent {
        idempotency_key: record.key,
        user,
        product,
        kind: record.kind,
        value: record.value,
        payload: record.payload,
        occurred_at: record.occurred_at,
    };
    let appended = store.append_event(&event).await?;
    let verb = if appended.duplicate { "dup" } else { "ack" };
    Ok(format!("{verb} {} {}", event.idempotency_key, appended.seq))
}

/// External ids to store ids, remembered for the life of the pipe.
#[derive(Default)]
struct Resolver {
    users: HashMap<String, UserId>,
    products: HashMap<String, ProductId>,
}

impl Resolver {
    async fn user(&mut self, store: &Store, external_id: &str) -> Result<UserId, StoreError> {
        if let Some(id) = self.users.get(external_id) {
            return Ok(*id);
        }
        let user = store
            .user_by_external_id(external_id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("unknown user {external_id:?}")))?;
        self.users.insert(external_id.to_owned(), user.id);
        Ok(user.id)
    }

    async fn product(&mut self, store: &Store, sku: &str) -> Result<ProductId, StoreError> {
        if let Some(id) = self.products.get(sku) {
            return Ok(*id);
        }
        let ids = store.product_ids_by_sku(&[sku]).await?;
        let id =
            *ids.get(sku).ok_or_else(|| StoreError::Invalid(format!("unknown product {sku:?}")))?;
        self.products.insert(sku.to_owned(), id);
        Ok(id)
    }
}
