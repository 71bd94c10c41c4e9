//! Writing the results file: one [`Writer`] owns it, and [`Shared`] lets
//! every thread that decides a row write its line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::existing::HeaderState;
use super::{errors_cell, io_error, write_error, Format, ResultsError, BOM, COLUMNS};
use super::{Counters, Outcome, Tally};

/// The one owner of the results file.
pub struct Writer {
    csv: csv::Writer<BufWriter<File>>,
    path: PathBuf,
    width: usize,
    counters: Arc<Counters>,
    tally: Tally,
}

impl Writer {
    /// Creates a new results file and writes its header.
    pub fn create(
        path: &Path,
        header: &[String],
        format: Format,
        counters: Arc<Counters>,
    ) -> Result<Writer, ResultsError> {
        let mut file =
            File::create(path).map_err(|e| io_error("create the results file", path, e))?;
        if format.bom {
            use std::io::Write as _;
            file.write_all(BOM)
                .map_err(|e| io_error("write the results file", path, e))?;
        }
        let mut w = Writer::over(file, path, header.len(), format, counters);
        w.csv
            .write_record(header)
            .map_err(|e| write_error(path, e))?;
        w.flush()?;
        Ok(w)
    }

    /// Appends to a results file whose intact length is `good_len`; a torn
    /// or missing header is written again first.
    pub fn append(
        path: &Path,
        good_len: u64,
        state: HeaderState,
        header: &[String],
        format: Format,
        counters: Arc<Counters>,
    ) -> Result<Writer, ResultsError> {
        if state == HeaderState::Missing {
            put_back_header(path, good_len, header, format)?;
            let mut file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| io_error("open the results file", path, e))?;
            file.seek(std::io::SeekFrom::End(0))
                .map_err(|e| io_error("open the results file", path, e))?;
            return Ok(Writer::over(file, path, header.len(), format, counters));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error("open the results file", path, e))?;
        file.set_len(good_len)
            .map_err(|e| io_error("repair the results file", path, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io_error("open the results file", path, e))?;
        if state == HeaderState::Torn && format.bom {
            use std::io::Write as _;
            file.write_all(BOM)
                .map_err(|e| io_error("write the results file", path, e))?;
        }
        let mut w = Writer::over(file, path, header.len(), format, counters);
        if state == HeaderState::Torn {
            w.csv
                .write_record(header)
                .map_err(|e| write_error(path, e))?;
            w.sync()?;
        }
        Ok(w)
    }

    fn over(
        file: File,
        path: &Path,
        width: usize,
        format: Format,
        counters: Arc<Counters>,
    ) -> Writer {
        let csv = csv::WriterBuilder::new()
            .flexible(false)
            .delimiter(format.delimiter)
            .from_writer(BufWriter::with_capacity(256 * 1024, file));
        Writer {
            csv,
            path: path.to_path_buf(),
            width,
            counters,
            tally: Tally::default(),
        }
    }

    /// Starts the error tally from an earlier run's (for `--resume`).
    pub fn with_tally(mut self, tally: Tally) -> Writer {
        self.tally = tally;
        self
    }

    /// Writes one outcome (buffered; see [`flush`](Self::flush)).
    pub fn write(&mut self, o: &Outcome) -> Result<(), ResultsError> {
        let input_width = self.width - COLUMNS.len();
        let err = |e: csv::Error| write_error(&self.path, e);
        for i in 0..input_width {
            self.csv
                .write_field(o.fields.get(i).unwrap_or(""))
                .map_err(err)?;
        }
        let mut num = itoa::Buffer::new();
        self.csv.write_field(num.format(o.row)).map_err(err)?;
        self.csv.write_field(o.status.as_str()).map_err(err)?;
        self.csv
            .write_field(o.id.map(|i| num.format(i).to_string()).unwrap_or_default())
            .map_err(err)?;
        self.csv
            .write_field(
                o.http
                    .map(|h| num.format(h).to_string())
                    .unwrap_or_default(),
            )
            .map_err(err)?;
        self.csv.write_field(num.format(o.attempts)).map_err(err)?;
        self.csv.write_field(errors_cell(&o.errors)).map_err(err)?;
        self.csv.write_record(None::<&[u8]>).map_err(err)?;
        self.counters.add(o.status, 1);
        if o.status.is_problem() {
            for e in &o.errors {
                self.tally.count_error(e);
            }
        }
        Ok(())
    }

    /// Hands everything written to the operating system: it survives a
    /// killed process. Syncing to disk is [`Shared::sync`]'s, once a second
    /// and off the network threads, and [`sync`](Self::sync)'s at the end.
    pub fn flush(&mut self) -> Result<(), ResultsError> {
        self.csv
            .flush()
            .map_err(|e| io_error("write the results file", &self.path, e))
    }

    /// Flushes and syncs to disk.
    pub fn sync(&mut self) -> Result<(), ResultsError> {
        self.csv
            .flush()
            .map_err(|e| io_error("write the results file", &self.path, e))?;
        self.csv
            .get_ref()
            .get_ref()
            .sync_data()
            .map_err(|e| io_error("sync the results file", &self.path, e))
    }
}

/// The results file, shared by every thread that decides rows: whoever
/// decides a row writes its line and hands it to the operating system under
/// a lock, and only then releases the row's permit (dropping the outcome).
/// No thread hand-off per row.
pub struct Shared {
    state: Mutex<SharedState>,
    /// The same file, to sync without taking the lock (`None` if the
    /// handle could not be duplicated: then it is synced at the end only).
    file: Option<File>,
    path: PathBuf,
}

struct SharedState {
    writer: Writer,
    /// The first write error; nothing more is written after it.
    failed: Option<ResultsError>,
}

impl Shared {
    pub fn new(writer: Writer) -> Shared {
        let file = writer.csv.get_ref().get_ref().try_clone().ok();
        let path = writer.path.clone();
        Shared {
            state: Mutex::new(SharedState {
                writer,
                failed: None,
            }),
            file,
            path,
        }
    }

    /// Syncs the lines handed to the operating system so far to disk,
    /// without holding up writers. A failure stops further writing, as a
    /// write error does.
    pub fn sync(&self) {
        let Some(file) = &self.file else { return };
        if let Err(e) = file.sync_data() {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.failed.is_none() {
                state.failed = Some(io_error("sync the results file", &self.path, e));
            }
        }
    }

    /// Writes one outcome. `false` when the results file has failed: the
    /// row stays in flight in the journal (`unknown` on resume) and the run
    /// must stop.
    pub fn record(&self, outcome: Outcome) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.failed.is_some() {
            return false;
        }
        let written = state
            .writer
            .write(&outcome)
            .and_then(|_| state.writer.flush());
        let ok = match written {
            Ok(()) => true,
            Err(e) => {
                state.failed = Some(e);
                false
            }
        };
        drop(state);
        // Dropping the outcome releases its permit: only now is the row out
        // of flight.
        drop(outcome);
        ok
    }

    /// Syncs the file and returns the tally, or the first write error.
    pub fn finish(&self) -> Result<Tally, ResultsError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = state.failed.take() {
            return Err(e);
        }
        state.writer.sync()?;
        Ok(std::mem::take(&mut state.writer.tally))
    }
}

/// Writes `header` and then the first `good_len` bytes of the results file
/// to a new file that replaces it (synced before and after the rename).
fn put_back_header(
    path: &Path,
    good_len: u64,
    header: &[String],
    format: Format,
) -> Result<(), ResultsError> {
    use std::io::{Read, Write};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let fail = |e| io_error("repair the results file", path, e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    if format.bom {
        tmp.as_file_mut().write_all(BOM).map_err(fail)?;
    }
    {
        let mut w = csv::WriterBuilder::new()
            .delimiter(format.delimiter)
            .from_writer(tmp.as_file_mut());
        w.write_record(header).map_err(|e| write_error(path, e))?;
        w.flush().map_err(fail)?;
    }
    let old = File::open(path).map_err(fail)?;
    std::io::copy(&mut old.take(good_len), tmp.as_file_mut()).map_err(fail)?;
    tmp.as_file_mut().flush().map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
