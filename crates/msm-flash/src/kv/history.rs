//! The failover history in the settings area: a ring of [`HISTORY`]
//! records (keys [`HISTORY_KEY`]`..`), mirrored in both halves like the
//! settings and reconciled with them (the newer record of each entry wins).

use embedded_storage::nor_flash::NorFlash;

use super::{HISTORY, HISTORY_KEY, KvDamage, NodeSettings};
use crate::durable::Durable;
use crate::error::Error;
use crate::failover_record::FailoverRecord;

impl<F: NorFlash + Durable> NodeSettings<F> {
    /// Keep `record` in the failover history (A, sync, then B, sync),
    /// overwriting the ring's entry `record.seq % HISTORY`: give it the
    /// ordinal after the newest of [`failover_history`](Self::failover_history).
    pub fn record_failover(&mut self, record: &FailoverRecord) -> Result<(), Error<F::Error>> {
        if let Err(e) = self.reconcile() {
            self.reconciled = false;
            return Err(e);
        }
        self.store_record_half(0, record)?;
        self.store_record_half(1, record)
    }

    /// The failover history, newest first (at most [`HISTORY`]; entries of
    /// another layout version are skipped).
    pub fn failover_history(&mut self) -> Result<[Option<FailoverRecord>; HISTORY], Error<F::Error>> {
        if let Err(e) = self.reconcile() {
            self.reconciled = false;
            return Err(e);
        }
        let mut out = [None; HISTORY];
        for (i, slot) in out.iter_mut().enumerate() {
            // A, else B (reconciled: they agree unless a write failed since).
            *slot = match self.fetch_record(0, i) {
                Ok(Some(r)) => Some(r),
                Ok(None) => self.fetch_record(1, i)?,
                Err(e) => self.fetch_record(1, i).map_err(|_| e)?,
            };
        }
        // Newest first; nothing after the entries held.
        out.sort_unstable_by(|a, b| b.map(|r| r.seq).cmp(&a.map(|r| r.seq)));
        Ok(out)
    }

    /// Make both halves hold the newer of each failover record: A's is
    /// written first, so a double write cut short leaves A's newer (or B's,
    /// if A was rebuilt empty). A half that refuses is erased and refilled
    /// (settings `merged` and every record of the other half).
    pub(super) fn reconcile_records(
        &mut self,
        seqs: &[[Option<u32>; HISTORY]; 2],
        merged: &[Option<u64>; 4],
    ) -> Result<(), Error<F::Error>> {
        for (i, (a, b)) in seqs[0].iter().zip(&seqs[1]).enumerate() {
            let from = match (*a, *b) {
                (Some(x), Some(y)) if x == y => continue,
                (None, None) => continue,
                (Some(x), Some(y)) => usize::from(y > x),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
            };
            let Some(record) = self.fetch_record(from, i)? else { continue };
            let to = 1 - from;
            if self.store_record_half(to, &record).is_err() {
                self.report.rebuilt[to].get_or_insert(KvDamage::RefusedWrites);
                self.erase_half(to)?;
                self.fill_half(to, &[None; 4], merged)?;
                for j in 0..HISTORY {
                    if let Some(r) = self.fetch_record(from, j)? {
                        self.store_record_half(to, &r)?;
                    }
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Failover record `i` of the ring in half `h`; a record of another
    /// layout version reads as none.
    pub(super) fn fetch_record(
        &mut self,
        h: usize,
        i: usize,
    ) -> Result<Option<FailoverRecord>, Error<F::Error>> {
        let k = HISTORY_KEY + i as u8;
        let bytes =
            self.with_map(h, k, async |map, buf| map.fetch_item::<[u8; FailoverRecord::LEN]>(buf, &k).await)?;
        Ok(bytes.and_then(|b| FailoverRecord::decode(&b)))
    }

    pub(super) fn store_record_half(
        &mut self,
        h: usize,
        record: &FailoverRecord,
    ) -> Result<(), Error<F::Error>> {
        let k = HISTORY_KEY + (record.seq % HISTORY as u32) as u8;
        let bytes = record.encode();
        self.with_map(h, k, async |map, buf| map.store_item(buf, &k, &bytes).await)?;
        self.flash.sync()?;
        Ok(())
    }
}
