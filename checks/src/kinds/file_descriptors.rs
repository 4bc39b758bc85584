//! `type = "file_descriptors"`: open file handles from `fs/file-nr`
//! against `fs.file-max`: in percent (default), allocated, or the limit.

use serde::Deserialize;

use super::{round2, Context, Finding};
use crate::expect::{parse_number, Expect};
use crate::Observed;

/// What to measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdMeasure {
    #[default]
    UsedPercent,
    Allocated,
    Max,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDescriptors {
    #[serde(default)]
    pub measure: FdMeasure,
}

impl FileDescriptors {
    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let read = cx
            .blocking(|h| {
                (
                    h.read_file("/proc/sys/fs/file-nr", 256),
                    h.read_file("/proc/sys/fs/file-max", 256),
                )
            })
            .await;
        let (nr, max) = match read {
            Ok((Ok(nr), Ok(max))) => (nr, max),
            Ok((Err(e), _)) => {
                return Finding::error(expect.describe(), format!("cannot read fs/file-nr: {e}"))
            }
            Ok((_, Err(e))) => {
                return Finding::error(expect.describe(), format!("cannot read fs.file-max: {e}"))
            }
            Err(e) => return Finding::error(expect.describe(), e),
        };
        let allocated = nr.split_whitespace().next().and_then(parse_number);
        let max = parse_number(&max);
        let (Some(allocated), Some(max)) = (allocated, max) else {
            return Finding::error(
                expect.describe(),
                format!(
                    "cannot read fs/file-nr `{}` / fs.file-max `{}`",
                    nr.trim(),
                    max.unwrap_or(0.0)
                ),
            );
        };
        let value = match self.measure {
            FdMeasure::UsedPercent if max > 0.0 => round2(allocated * 100.0 / max),
            FdMeasure::UsedPercent => 0.0,
            FdMeasure::Allocated => allocated,
            FdMeasure::Max => max,
        };
        let mut f = Finding::judge(Observed::Number(value), expect);
        f.message = format!(
            "{} ({} allocated of {})",
            f.message,
            Observed::Number(allocated),
            Observed::Number(max)
        );
        f
    }
}
