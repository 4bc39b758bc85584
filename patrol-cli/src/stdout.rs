//! Everything the CLI prints on stdout goes through here ([`out!`] and
//! [`outln!`] instead of `print!` and `println!`, which panic when the
//! reader has gone): a write to a closed pipe (`patrol report --text |
//! head`) becomes [`Closed`], which `main` turns into a quiet exit 141,
//! the status a shell shows for a command ended by SIGPIPE. Not 0: a
//! result cut off is not a result that passed.

use std::io::Write;

/// The exit status after stdout was closed by its reader (128 + SIGPIPE).
pub const EXIT_CLOSED: u8 = 141;

/// Stdout was closed by its reader: stop printing, say nothing.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// Write `args` to stdout and flush; a broken pipe is [`Closed`].
pub fn write(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// What `write` writes to stdout (through a buffer), then flush; a
/// broken pipe is [`Closed`]. For output too large to format first (the
/// JSON or JUnit of a 100,000-node sweep).
pub fn write_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut stdout).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// Whether `e` (or what caused it) is a closed stdout.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<Closed>()
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `print!` that returns early with [`Closed`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))?
    };
}

/// `println!` that returns early with [`Closed`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};
