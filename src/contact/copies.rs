//! A copy of libphonenumber for each thread that reads phone numbers.
//!
//! Each of the library's compiled patterns keeps scratch space for matching
//! that threads sharing one copy hand to each other at every match: two
//! threads checking numbers with one copy took about a tenth more CPU than
//! with a copy each. So each thread reads numbers with its own copy, taken
//! on its first number and put back when the thread ends, for the next
//! thread to take. A copy costs about 20 ms to build, and each region's
//! patterns are compiled in it when its first number comes (up to 0.7 s and
//! 120 MB for all of them).

use std::cell::OnceCell;
use std::sync::{Mutex, PoisonError};

use rlibphonenumber::PhoneNumberUtil;

/// Copies no thread holds: built earlier, by threads that have ended or for
/// a one-off question.
static SPARE: Mutex<Vec<PhoneNumberUtil>> = Mutex::new(Vec::new());

fn take() -> PhoneNumberUtil {
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    // The metadata is built into the binary: it loads, or nothing would.
    spare.unwrap_or_else(|| PhoneNumberUtil::new().expect("libphonenumber's metadata loads"))
}

fn put_back(util: PhoneNumberUtil) {
    SPARE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(util);
}

/// A thread's copy, put back when the thread ends.
struct Held(Option<PhoneNumberUtil>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(util) = self.0.take() {
            put_back(util);
        }
    }
}

thread_local! {
    static HELD: OnceCell<Held> = const { OnceCell::new() };
}

/// Runs `f` with this thread's copy, taken on the thread's first call.
pub(super) fn with_own<R>(f: impl FnOnce(&PhoneNumberUtil) -> R) -> R {
    HELD.with(|held| {
        match &held.get_or_init(|| Held(Some(take()))).0 {
            Some(util) => f(util),
            // Only once the copy is put back, as the thread ends.
            None => with_spare(f),
        }
    })
}

/// Runs `f` with this thread's copy if it has one, or with a spare one put
/// back after: for questions about regions, which match no pattern, so that
/// the thread that then reads numbers takes that copy rather than building
/// another.
pub(super) fn with_any<R>(f: impl FnOnce(&PhoneNumberUtil) -> R) -> R {
    if HELD.with(|held| held.get().is_some()) {
        with_own(f)
    } else {
        with_spare(f)
    }
}

fn with_spare<R>(f: impl FnOnce(&PhoneNumberUtil) -> R) -> R {
    let util = take();
    let answer = f(&util);
    put_back(util);
    answer
}
