//! The copies of libphonenumber that threads read phone numbers with.
//!
//! Each of the library's compiled patterns keeps scratch space for matching
//! that threads sharing one copy hand to each other at every match: two
//! threads checking numbers of one region with one copy took about half as
//! much CPU again as with a copy each. So a thread reads numbers with a
//! copy of its own, taken on its first number and put back when the thread
//! ends, for the next thread to take. A copy costs about 20 ms to build,
//! and each region's patterns are compiled in it when its first number
//! comes (up to 0.7 s and 120 MB for all of them).
//!
//! An export whose numbers span many countries would compile every region
//! in every copy. So a thread that finds no copy to take, while another
//! thread reads with the first copy built, waits for the first numbers read
//! (a few milliseconds; a tenth of a second at most): when they span many
//! calling codes, it shares that copy (about an eighth more CPU on such an
//! export, a third less memory); otherwise it builds its own. Which copy
//! reads a number never changes the answer.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rlibphonenumber::PhoneNumberUtil;

/// Numbers read before a thread that has no copy decides.
const TRIAL: u32 = 256;

/// More distinct calling codes than this among the numbers read: the
/// export is international, and threads share the first copy.
const FEW_CODES: u32 = 8;

/// How long a thread that has no copy waits for the first numbers.
const WAIT: Duration = Duration::from_millis(100);

type Lib = Arc<PhoneNumberUtil>;

/// Copies no thread holds: built earlier, by threads that have ended or for
/// a one-off question.
static SPARE: Mutex<Vec<Lib>> = Mutex::new(Vec::new());

/// The first copy built: the one threads share.
static FIRST: OnceLock<Lib> = OnceLock::new();

/// The calling codes (1 to 999) of the first numbers read, one bit each.
static CODES: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// How many numbers `CODES` has seen (up to about `TRIAL`).
static NOTED: AtomicU32 = AtomicU32::new(0);

fn new_copy() -> Lib {
    // The metadata is built into the binary: it loads, or nothing would.
    Arc::new(PhoneNumberUtil::new().expect("libphonenumber's metadata loads"))
}

/// A copy no thread holds, built now: the first one built is also the one
/// threads share.
fn build() -> Lib {
    let mut built = false;
    let first = FIRST.get_or_init(|| {
        built = true;
        new_copy()
    });
    if built {
        first.clone()
    } else {
        new_copy()
    }
}

fn spare() -> Option<Lib> {
    SPARE.lock().unwrap_or_else(PoisonError::into_inner).pop()
}

fn put_back(copy: Lib) {
    SPARE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(copy);
}

/// Records one of the first numbers read, with its calling code if it has one.
fn note(code: Option<i32>) {
    if NOTED.load(Ordering::Relaxed) >= TRIAL {
        return;
    }
    NOTED.fetch_add(1, Ordering::Relaxed);
    if let Some(Ok(code @ 0..=1023)) = code.map(usize::try_from) {
        CODES[code / 64].fetch_or(1 << (code % 64), Ordering::Relaxed);
    }
}

/// Whether the first numbers read span many calling codes; waits for
/// them, up to [`WAIT`].
fn international() -> bool {
    let started = Instant::now();
    loop {
        let codes = codes_seen();
        if codes > FEW_CODES {
            return true;
        }
        if NOTED.load(Ordering::Relaxed) >= TRIAL || started.elapsed() > WAIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How many distinct calling codes the numbers read so far have.
fn codes_seen() -> u32 {
    CODES
        .iter()
        .map(|c| c.load(Ordering::Relaxed).count_ones())
        .sum()
}

/// The copy a thread reads with.
enum Held {
    /// Its own, put back when the thread ends.
    Own(Lib),
    /// The first copy, shared: the export is international.
    Shared(Lib),
}

impl Held {
    fn take() -> Held {
        if let Some(copy) = spare() {
            return Held::Own(copy);
        }
        let mut built = false;
        let first = FIRST.get_or_init(|| {
            built = true;
            new_copy()
        });
        if !built && international() {
            Held::Shared(first.clone())
        } else if built {
            Held::Own(first.clone())
        } else {
            Held::Own(build())
        }
    }

    fn copy(&self) -> &PhoneNumberUtil {
        match self {
            Held::Own(c) | Held::Shared(c) => c,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Held::Own(copy) = self {
            put_back(copy.clone());
        }
    }
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's copy, taken on the thread's first call; `f`
/// gives back its answer and the calling code of the number it read, if any.
pub(super) fn with_own<R>(f: impl FnOnce(&PhoneNumberUtil) -> (R, Option<i32>)) -> R {
    HELD.with(|held| match held.try_borrow_mut() {
        Ok(mut held) => {
            let held = held.get_or_insert_with(Held::take);
            let (answer, code) = f(held.copy());
            note(code);
            answer
        }
        // Asked from inside `f`: not a number this thread reads.
        Err(_) => with_spare(|util| f(util).0),
    })
}

/// Runs `f` with this thread's copy if it has one, or with a spare one put
/// back after: for questions about regions, which match no pattern, so that
/// the thread that then reads numbers takes that copy rather than building
/// another.
pub(super) fn with_any<R>(f: impl FnOnce(&PhoneNumberUtil) -> R) -> R {
    HELD.with(|held| {
        let held = held.try_borrow().ok();
        match held.as_deref().and_then(Option::as_ref) {
            Some(held) => f(held.copy()),
            None => with_spare(f),
        }
    })
}

fn with_spare<R>(f: impl FnOnce(&PhoneNumberUtil) -> R) -> R {
    let copy = spare().unwrap_or_else(build);
    let answer = f(&copy);
    put_back(copy);
    answer
}
