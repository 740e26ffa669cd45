//! What the fuzz targets share: an allocator that turns any allocation
//! above a bound into a crash, and the bounds, derived from the protocol's
//! frame limits.
//!
//! libFuzzer's own `-malloc_limit_mb` only works through the malloc hooks
//! that a sanitizer installs; without AddressSanitizer (how these targets
//! are run, for speed) it checks nothing. This allocator checks every Rust
//! allocation, with or without a sanitizer, at the cost of two atomic
//! operations per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use fxfer::protocol::{Entry, ENTRY_FIXED_LEN, FRAME_HEADER_LEN, MAX_CONTROL_PAYLOAD};

/// The most one control frame can justify allocating: its payload (plus
/// header), or the entries a full ENTRIES frame decodes into (each entry
/// takes at least `ENTRY_FIXED_LEN` bytes on the wire and
/// `size_of::<Entry>()` in memory), whichever is larger. A DATA frame
/// (up to 16 MiB) justifies nothing: its payload is streamed, never held.
pub const FRAME_BOUND: usize = {
    let frame = FRAME_HEADER_LEN + MAX_CONTROL_PAYLOAD;
    let entries = MAX_CONTROL_PAYLOAD / ENTRY_FIXED_LEN as usize * std::mem::size_of::<Entry>();
    if frame > entries {
        frame
    } else {
        entries
    }
};

/// The client additionally receives file data into buffers of
/// [`fxfer::client::CHUNK`] (1 MiB), whatever a DATA frame announces.
pub const CLIENT_BOUND: usize = if fxfer::client::CHUNK > FRAME_BOUND {
    fxfer::client::CHUNK
} else {
    FRAME_BOUND
};

/// The allocator [`Bounded::report_at_exit`] reports on.
static AT_EXIT: AtomicPtr<Bounded> = AtomicPtr::new(std::ptr::null_mut());

/// The system allocator, counting: any single allocation above `single`
/// bytes, or live heap above `live` bytes (unbounded growth), aborts the
/// process with a message, which libFuzzer reports as a crash with the
/// input that caused it.
pub struct Bounded {
    single: AtomicUsize,
    live: usize,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Bounded {
    pub const fn new(single: usize, live: usize) -> Bounded {
        Bounded {
            single: AtomicUsize::new(single),
            live,
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The most heap that was live at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Prints the peak live heap when the process exits (libFuzzer ends a
    /// run of `-runs=N` with `exit`), for the record.
    pub fn report_at_exit(&'static self) {
        extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        extern "C" fn at_exit() {
            let a = AT_EXIT.load(Ordering::Relaxed);
            if !a.is_null() {
                // SAFETY: only ever set from a `&'static Bounded`.
                let a = unsafe { &*a };
                eprintln!("fxfer-fuzz: peak live heap at exit {} bytes", a.peak());
            }
        }
        let first = AT_EXIT.swap(self as *const Bounded as *mut Bounded, Ordering::Relaxed);
        if first.is_null() {
            // SAFETY: registers a plain function with the C library.
            unsafe { atexit(at_exit) };
        }
    }

    /// Lowers the single bound to `FXFER_FUZZ_BOUND` bytes when that is
    /// set: a way to see the guard fire (with `FXFER_FUZZ_BOUND=1000` any
    /// target crashes on its first sizeable allocation).
    pub fn from_env(&'static self) {
        self.report_at_exit();
        if let Some(b) = std::env::var("FXFER_FUZZ_BOUND")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            self.single.fetch_min(b, Ordering::Relaxed);
        }
        if std::env::var_os("FXFER_FUZZ_DEBUG").is_some() {
            eprintln!(
                "fxfer-fuzz: single allocations up to {} bytes, live heap up to {} bytes",
                self.single.load(Ordering::Relaxed),
                self.live
            );
        }
    }

    fn check(&self, size: usize) {
        let single = self.single.load(Ordering::Relaxed);
        if size > single {
            die(b"allocation above the single bound: ", size, single);
        }
        let now = self.now.fetch_add(size, Ordering::Relaxed) + size;
        if now > self.live {
            die(b"live heap above the bound: ", now, self.live);
        }
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

/// Reports and aborts without allocating (we are inside the allocator).
fn die(what: &[u8], got: usize, bound: usize) -> ! {
    let mut msg = [0u8; 160];
    let mut w = &mut msg[..];
    let _ = w.write_all(b"fxfer-fuzz: ");
    let _ = w.write_all(what);
    let _ = write_num(&mut w, got);
    let _ = w.write_all(b" bytes > ");
    let _ = write_num(&mut w, bound);
    let _ = w.write_all(b"\n");
    let left = w.len();
    let _ = std::io::stderr().write_all(&msg[..msg.len() - left]);
    std::process::abort();
}

fn write_num(w: &mut &mut [u8], mut n: usize) -> std::io::Result<()> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.write_all(&digits[i..])
}

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.now.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.now.fetch_sub(layout.size(), Ordering::Relaxed);
        self.check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// Prints the peak live heap each time it has doubled since last printed
/// (outside the allocator, so printing may allocate), for the record.
pub fn report_peak(a: &Bounded) {
    static SHOWN: AtomicUsize = AtomicUsize::new(0);
    let peak = a.peak();
    if peak > 2 * SHOWN.load(Ordering::Relaxed) {
        SHOWN.store(peak, Ordering::Relaxed);
        eprintln!("fxfer-fuzz: peak live heap {peak} bytes");
    }
}
