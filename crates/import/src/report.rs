//! What an import read, kept and set aside, and why.

use std::collections::BTreeMap;
use std::fmt;

/// How many diagnostics a report keeps in full for each entity; the rest are counted.
pub const KEPT_DIAGNOSTICS: usize = 10;

/// One row set aside, with where it was and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line number in the file; 0 when the row was set aside after reading
    /// (an event whose user is in neither the file nor the store).
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.reason),
            line => write!(f, "{}:{line}: {}", self.file, self.reason),
        }
    }
}

/// Rows of one kind of entity: read from the source, kept, and set aside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityCounts {
    pub read: u64,
    pub kept: u64,
    /// Rows that could not be parsed or failed validation.
    pub malformed: u64,
    /// Well-formed rows that refer to something the source does not have (a rating of
    /// a book missing from the book list).
    pub orphaned: u64,
    /// Rows whose identity repeats an earlier row (the later one is dropped).
    pub duplicate: u64,
    /// Fields cleaned on kept rows (an impossible age dropped, an entity decoded).
    pub repaired: u64,
}

/// The report of reading one source.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub source: String,
    pub entities: BTreeMap<&'static str, EntityCounts>,
    /// The first [`KEPT_DIAGNOSTICS`] rows set aside of each entity.
    pub diagnostics: Vec<Diagnostic>,
    pub n_diagnostics: u64,
}

/// Why a row was set aside, as counted in [`EntityCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAside {
    Malformed,
    Orphaned,
    Duplicate,
}

impl Report {
    pub fn new(source: &str) -> Report {
        Report { source: source.to_owned(), ..Report::default() }
    }

    pub fn counts(&mut self, entity: &'static str) -> &mut EntityCounts {
        self.entities.entry(entity).or_default()
    }

    pub fn read(&mut self, entity: &'static str) {
        self.counts(entity).read += 1;
    }

    pub fn kept(&mut self, entity: &'static str) {
        self.counts(entity).kept += 1;
    }

    pub fn repaired(&mut self, entity: &'static str) {
        self.counts(entity).repaired += 1;
    }

    /// Sets a row aside: counted, and its diagnostic kept if there is room.
    pub fn set_aside(
        &mut self,
        entity: &'static str,
        why: SetAside,
        file: &str,
        line: u64,
        reason: String,
    ) {
        let counts = self.counts(entity);
        match why {
            SetAside::Malformed => counts.malformed += 1,
            SetAside::Orphaned => counts.orphaned += 1,
            SetAside::Duplicate => counts.duplicate += 1,
        }
        let set_aside = counts.malformed + counts.orphaned + counts.duplicate;
        self.n_diagnostics += 1;
        if set_aside <= KEPT_DIAGNOSTICS as u64 {
            self.diagnostics.push(Diagnostic { file: file.to_owned(), line, reason });
        }
    }

    pub fn total_read(&self) -> u64 {
        self.entities.values().map(|c| c.read).sum()
    }

    pub fn total_malformed(&self) -> u64 {
        self.entities.values().map(|c| c.malformed).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "import of {}", self.source)?;
        writeln!(
            f,
            "  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "entity", "read", "kept", "malformed", "orphaned", "duplicate", "repaired"
        )?;
        for (entity, c) in &self.entities {
            writeln!(
                f,
                "  {entity:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                c.read, c.kept, c.malformed, c.orphaned, c.duplicate, c.repaired
            )?;
        }
        if self.n_diagnostics > 0 {
            writeln!(
                f,
                "  rows set aside: {} (the first {KEPT_DIAGNOSTICS} of each entity shown)",
                self.n_diagnostics
            )?;
            for d in &self.diagnostics {
                writeln!(f, "    {d}")?;
            }
        }
        Ok(())
    }
}
