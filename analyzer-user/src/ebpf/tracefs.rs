//! Tracepoint record layouts read from tracefs at run time.
//!
//! Field offsets of tracepoint records change between kernels (`tcp:tcp_send_reset` moved
//! its fields between 6.1 and 6.18), so the analyzer never hard-codes them: it parses
//! `/sys/kernel/tracing/events/<group>/<name>/format` and hands offsets to the programs.
use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use aya::{Ebpf, programs::TracePoint};

use crate::error::Error;

/// Where tracefs is normally mounted.
pub const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";

/// Finds the tracefs mount point from `/proc/self/mounts`.
pub fn find_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    parse_mounts(&mounts)
}

fn parse_mounts(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (_dev, dir, fstype) = (it.next()?, it.next()?, it.next()?);
        (fstype == "tracefs").then(|| PathBuf::from(dir))
    })
}

/// How tracefs became available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// It was already mounted here.
    Found(PathBuf),
    /// We mounted it here.
    Mounted(PathBuf),
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        match self {
            Self::Found(p) | Self::Mounted(p) => p,
        }
    }
}

/// Returns the tracefs mount point, mounting tracefs at [`DEFAULT_TRACEFS`] if needed.
pub fn ensure_mounted() -> Result<Mount, Error> {
    if let Some(p) = find_mount() {
        return Ok(Mount::Found(p));
    }
    let target = PathBuf::from(DEFAULT_TRACEFS);
    let c_target = CString::new(DEFAULT_TRACEFS).expect("no NUL in a constant");
    let c_fs = CString::new("tracefs").expect("no NUL in a constant");
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration; a
    // null data pointer is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            c_fs.as_ptr(),
            c_target.as_ptr(),
            c_fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::TracefsMount {
            path: target,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Mount::Mounted(target))
}

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The C declaration, e.g. `__u8 saddr[4]`.
    pub decl: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// A parsed tracepoint `format` file.
#[derive(Clone, Debug, Default)]
pub struct Format {
    /// `group:name`.
    pub tracepoint: String,
    pub fields: HashMap<String, Field>,
    /// The `print fmt:` line: it carries `__print_symbolic` tables (enum names).
    pub print_fmt: String,
}

impl Format {
    /// Reads and parses the format of `group:name` under the tracefs mount `root`.
    pub fn read(root: &Path, group: &str, name: &str) -> Result<Self, Error> {
        let path = format_path(root, group, name);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&format!("{group}:{name}"), &path, &text)
    }

    /// Parses the text of a `format` file; `path` is used in errors only.
    pub fn parse(tracepoint: &str, path: &Path, text: &str) -> Result<Self, Error> {
        let mut fmt = Self {
            tracepoint: tracepoint.to_owned(),
            ..Self::default()
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                fmt.print_fmt = rest.trim().to_owned();
                continue;
            }
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let err = |reason| Error::FormatSyntax {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            // `field:__u8 saddr[4];	offset:22;	size:4;	signed:0;`
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().ok_or_else(|| err("no declaration"))?;
            let mut offset = None;
            let mut size = None;
            let mut signed = false;
            for p in parts.filter(|p| !p.is_empty()) {
                let (k, v) = p
                    .split_once(':')
                    .ok_or_else(|| err("attribute without ':'"))?;
                let parse = || {
                    v.parse::<u32>()
                        .map_err(|_| err("attribute is not a number"))
                };
                match k {
                    "offset" => offset = Some(parse()?),
                    "size" => size = Some(parse()?),
                    "signed" => signed = parse()? != 0,
                    _ => {}
                }
            }
            let name = field_name(decl).ok_or_else(|| err("no field name"))?;
            fmt.fields.insert(
                name.to_owned(),
                Field {
                    decl: decl.to_owned(),
                    offset: offset.ok_or_else(|| err("no offset"))?,
                    size: size.ok_or_else(|| err("no size"))?,
                    signed,
                },
            );
        }
        Ok(fmt)
    }

    /// The offset of `name` if present with exactly `size` bytes; `Ok(None)` if absent.
    pub fn offset_sized(&self, name: &'static str, size: u32) -> Result<Option<u32>, Error> {
        match self.fields.get(name) {
            None => Ok(None),
            Some(f) if f.size == size => Ok(Some(f.offset)),
            Some(f) => Err(Error::FormatField {
                tracepoint: self.tracepoint.clone(),
                field: name,
                problem: format!("is {} bytes, expected {size}", f.size),
            }),
        }
    }

    /// Like [`Self::offset_sized`] but the field must exist.
    pub fn require(&self, name: &'static str, size: u32) -> Result<u32, Error> {
        self.offset_sized(name, size)?
            .ok_or_else(|| Error::FormatField {
                tracepoint: self.tracepoint.clone(),
                field: name,
                problem: "is missing".to_owned(),
            })
    }
}

impl Format {
    /// The offset of `name`, which must exist with at least `min_size` bytes.
    pub fn require_min(&self, name: &'static str, min_size: u32) -> Result<u32, Error> {
        match self.fields.get(name) {
            Some(f) if f.size >= min_size => Ok(f.offset),
            Some(f) => Err(Error::FormatField {
                tracepoint: self.tracepoint.clone(),
                field: name,
                problem: format!("is {} bytes, expected at least {min_size}", f.size),
            }),
            None => Err(Error::FormatField {
                tracepoint: self.tracepoint.clone(),
                field: name,
                problem: "is missing".to_owned(),
            }),
        }
    }
}

/// The path of a tracepoint's `format` file under a tracefs mount.
pub fn format_path(root: &Path, group: &str, name: &str) -> PathBuf {
    root.join("events").join(group).join(name).join("format")
}

/// `const void * skaddr` -> `skaddr`; `__u8 saddr[4]` -> `saddr`.
fn field_name(decl: &str) -> Option<&str> {
    let last = decl.split_whitespace().last()?;
    let name = last.split('[').next()?.trim_start_matches('*');
    (!name.is_empty()).then_some(name)
}

/// Loads the tracepoint program `program` and attaches it to `group:name`.
pub(crate) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    group: &str,
    name: &str,
) -> Result<(), Error> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| Error::MissingObject {
            kind: "program",
            name: program.to_owned(),
        })?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {program} is not a tracepoint"),
            source,
        })?;
    prog.load().map_err(|source| Error::Program {
        what: format!("load program {program} (verifier)"),
        source,
    })?;
    prog.attach(group, name).map_err(|source| Error::Program {
        what: format!("attach {group}:{name}"),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Linux 6.18's tcp:tcp_receive_reset.
    const RECEIVE_RESET_6_18: &str = "name: tcp_receive_reset
ID: 1520
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u16 sport;\toffset:16;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:18;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:20;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:22;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:26;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:30;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:46;\tsize:16;\tsigned:0;
\tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;

print fmt: \"family=%s sport=%hu\", REC->family
";

    #[test]
    fn parses_fields_and_print_fmt() {
        let f = Format::parse("tcp:tcp_receive_reset", Path::new("f"), RECEIVE_RESET_6_18).unwrap();
        assert_eq!(f.fields["skaddr"].offset, 8);
        assert_eq!(f.fields["saddr_v6"].offset, 30);
        assert_eq!(f.fields["saddr_v6"].size, 16);
        assert_eq!(f.fields["sock_cookie"].offset, 64);
        assert!(f.fields["common_pid"].signed);
        assert!(f.print_fmt.starts_with("\"family=%s"));
        assert_eq!(f.require("sport", 2).unwrap(), 16);
    }

    #[test]
    fn wrong_size_and_missing_fields_are_named() {
        let f = Format::parse("tcp:x", Path::new("f"), RECEIVE_RESET_6_18).unwrap();
        let e = f.require("sport", 4).unwrap_err().to_string();
        assert!(e.contains("sport") && e.contains("2 bytes"), "{e}");
        let e = f.require("state", 4).unwrap_err().to_string();
        assert!(e.contains("state") && e.contains("missing"), "{e}");
        assert_eq!(f.offset_sized("state", 4).unwrap(), None);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let text = "format:\n\tfield:__u16 sport;\toffset:x;\tsize:2;\n";
        let e = Format::parse("tcp:x", Path::new("/t/format"), text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/t/format:2: malformed tracepoint format line: attribute is not a number"
        );
        let text = "\tfield:__u16 sport;\tsize:2;\n";
        let e = Format::parse("tcp:x", Path::new("f"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no offset"), "{e}");
    }

    #[test]
    fn finds_tracefs_in_mount_table() {
        let m = "sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n";
        assert_eq!(parse_mounts(m), Some(PathBuf::from("/sys/kernel/tracing")));
        assert_eq!(parse_mounts("proc /proc proc rw 0 0\n"), None);
    }
}
