//! A core run's log ledger: how many records the run made, dropped and
//! which batch sequence number comes next, kept in a small file of the
//! core's spill directory mapped into memory, so it survives the process
//! (SIGKILL, a crash): the page belongs to the kernel's page cache, and
//! every update is a plain store into it, no system call.
//!
//! The next run of the core finds the ledgers its predecessors left and
//! sends each as an end-of-stream marker after the stream's spill files;
//! controld subtracts what it stored of that stream from what the ledger
//! says was made and dropped: the rest was lost in the killed process's
//! memory, and is counted. A ledger is deleted once its marker is stored.
//!
//! A machine crash may lose the last updates of the page (it is not
//! fsynced): the count is then short by what was made since the kernel
//! last wrote it back, never too high.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u64 = u64::from_le_bytes(*b"PLSDLGR1");
const SLOTS: usize = 5;
const SIZE: usize = SLOTS * 8;

/// What an ended run's ledger says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub stream_id: u64,
    pub issued: u64,
    pub dropped: u64,
    /// One past the stream's last sealed batch.
    pub next_seq: u64,
}

/// The live ledger of this run.
pub struct Ledger {
    map: *mut AtomicU64,
    path: PathBuf,
}

enum Slot {
    Magic = 0,
    Stream = 1,
    Issued = 2,
    Dropped = 3,
    NextSeq = 4,
}

pub fn file_name(stream_id: u64) -> String {
    format!("{stream_id:016x}.ledger")
}

/// The stream a ledger file name belongs to.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".ledger")?;
    (stem.len() == 16)
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// Reads an ended run's ledger; `None` when it is torn or not a ledger.
pub fn read(path: &Path) -> Option<Ended> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != SIZE {
        return None;
    }
    let slot = |i: Slot| {
        let i = i as usize * 8;
        u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"))
    };
    (slot(Slot::Magic) == MAGIC).then(|| Ended {
        stream_id: slot(Slot::Stream),
        issued: slot(Slot::Issued),
        dropped: slot(Slot::Dropped),
        next_seq: slot(Slot::NextSeq),
    })
}

impl Ledger {
    /// Creates the ledger of `stream_id` in `dir`.
    pub fn create(dir: &Path, stream_id: u64) -> std::io::Result<Ledger> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name(stream_id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        if let Err(e) = file.set_len(SIZE as u64) {
            // A full disk (or a file-size limit): leave nothing behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // SAFETY: a fresh shared mapping of a file we just sized; the
        // mapping outlives the descriptor (closed when `file` drops).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let ledger = Ledger {
            map: map.cast(),
            path,
        };
        ledger.set(Slot::Stream, stream_id);
        ledger.set(Slot::NextSeq, 1);
        // Last: a ledger torn before this store reads as no ledger.
        ledger.set(Slot::Magic, MAGIC);
        Ok(ledger)
    }

    fn set(&self, slot: Slot, value: u64) {
        // SAFETY: `map` points at SLOTS aligned u64s (a page-aligned
        // mapping) for the ledger's life; only this core writes them.
        unsafe { (*self.map.add(slot as usize)).store(value.to_le(), Ordering::Relaxed) }
    }

    /// The run's totals so far.
    pub fn update(&self, issued: u64, dropped: u64, next_seq: u64) {
        self.set(Slot::Issued, issued);
        self.set(Slot::Dropped, dropped);
        self.set(Slot::NextSeq, next_seq);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, unmapped once.
        unsafe {
            libc::munmap(self.map.cast(), SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_outlives_its_writer_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let l = Ledger::create(dir.path(), 0xabc).unwrap();
            l.update(41, 3, 7);
            l.path().to_path_buf()
        };
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_file_name(name), Some(0xabc));
        assert_eq!(
            read(&path),
            Some(Ended {
                stream_id: 0xabc,
                issued: 41,
                dropped: 3,
                next_seq: 7
            })
        );
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(read(&path), None);
        assert_eq!(
            parse_file_name("00000000000000ab-0000000000000001.batch"),
            None
        );
    }
}
