//! Streamed (in-progress) transactions, kept off the heap: their change messages are
//! recorded as the raw pgoutput bytes the server sent, in memory up to
//! [`MEMORY_LIMIT`] bytes and in an unlinked temporary file beyond, and decoded only when
//! the transaction commits. Memory therefore stays bounded whatever a transaction's size;
//! an aborted transaction (or subtransaction) is dropped without ever being decoded.
//!
//! A record is either `SetRel` (this relation, as it was described when the change
//! arrived, applies from here on: DDL inside the transaction stays correct) or `Data`
//! (subtransaction, WAL position, message bytes).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::Rel;

/// Bytes of records kept in memory before the transaction moves to a temporary file.
pub const MEMORY_LIMIT: usize = 8 << 20;

/// One record read back.
pub enum Record {
    SetRel { oid: u32, rel: Arc<Rel> },
    Data { wal_start: u64, data: Bytes },
}

/// The records of one streamed transaction.
#[derive(Default)]
pub struct SpilledTx {
    rels: Vec<Arc<Rel>>,
    /// oid -> index in `rels` of the version last recorded.
    current: HashMap<u32, usize>,
    aborted: HashSet<u32>,
    mem: Vec<u8>,
    file: Option<BufWriter<std::fs::File>>,
    pub changes: u64,
}

/// Why a streamed transaction could not be kept or read back.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spilling a streamed transaction to a temporary file: {0}")]
    Io(#[from] std::io::Error),
    /// A record names a relation version the spill never wrote (a damaged file).
    #[error("spill: relation index {0} was never recorded")]
    BadRelation(usize),
}

impl SpilledTx {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SpillError> {
        if self.file.is_none() && self.mem.len() + bytes.len() > MEMORY_LIMIT {
            let mut f = BufWriter::with_capacity(1 << 20, tempfile::tempfile()?);
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => Ok(f.write_all(bytes)?),
            None => {
                self.mem.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Records a change message naming the relations `rels` (as described now).
    pub fn push(&mut self, rels: &[(u32, Arc<Rel>)], subxid: u32, wal_start: u64, data: &[u8]) -> Result<(), SpillError> {
        for (oid, rel) in rels {
            let same = self.current.get(oid).is_some_and(|&i| Arc::ptr_eq(&self.rels[i], rel));
            if !same {
                self.rels.push(rel.clone());
                let idx = self.rels.len() - 1;
                self.current.insert(*oid, idx);
                let mut h = vec![0u8];
                h.extend_from_slice(&oid.to_be_bytes());
                h.extend_from_slice(&(idx as u32).to_be_bytes());
                self.write(&h)?;
            }
        }
        let mut h = vec![1u8];
        h.extend_from_slice(&subxid.to_be_bytes());
        h.extend_from_slice(&wal_start.to_be_bytes());
        h.extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.write(&h)?;
        self.write(data)?;
        self.changes += 1;
        Ok(())
    }

    /// A subtransaction rolled back: its records are skipped when read.
    pub fn abort_sub(&mut self, subxid: u32) {
        self.aborted.insert(subxid);
    }

    /// True once the records moved to a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Reads the records back, in order, skipping aborted subtransactions.
    pub fn into_reader(self) -> Result<SpillReader, SpillError> {
        let src: Box<dyn Read + Send> = match self.file {
            Some(f) => {
                let mut f = f.into_inner().map_err(|e| SpillError::Io(e.into_error()))?;
                f.seek(SeekFrom::Start(0))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            }
            None => Box::new(std::io::Cursor::new(self.mem)),
        };
        Ok(SpillReader { src, rels: self.rels, aborted: self.aborted })
    }
}

/// Reads a transaction's records back.
pub struct SpillReader {
    src: Box<dyn Read + Send>,
    rels: Vec<Arc<Rel>>,
    aborted: HashSet<u32>,
}

impl SpillReader {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], SpillError> {
        let mut b = [0u8; N];
        self.src.read_exact(&mut b)?;
        Ok(b)
    }

    /// The next record, `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, SpillError> {
        loop {
            let mut kind = [0u8; 1];
            if self.src.read(&mut kind)? == 0 {
                return Ok(None);
            }
            if kind[0] == 0 {
                let oid = u32::from_be_bytes(self.exact()?);
                let idx = u32::from_be_bytes(self.exact()?) as usize;
                let rel = self.rels.get(idx).cloned().ok_or(SpillError::BadRelation(idx))?;
                return Ok(Some(Record::SetRel { oid, rel }));
            }
            let subxid = u32::from_be_bytes(self.exact()?);
            let wal_start = u64::from_be_bytes(self.exact()?);
            let len = u32::from_be_bytes(self.exact()?) as usize;
            let mut data = vec![0u8; len];
            self.src.read_exact(&mut data)?;
            if !self.aborted.contains(&subxid) {
                return Ok(Some(Record::Data { wal_start, data: Bytes::from(data) }));
            }
        }
    }
}
