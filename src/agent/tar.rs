//! Just enough of the tar format to take the one file of a dump snapshot out of `restic dump <id> /`.
//!
//! Restores dump the snapshot's root rather than its file because the file's name is only known from the
//! snapshot listing, which runs at the same time (each restic run spends ~0.7 s deriving the key). restic
//! writes the archive with Go's archive/tar: USTAR headers, PAX extended headers when a name or size does
//! not fit, directory entries for parent directories.

use tokio::io::{AsyncRead, AsyncReadExt};

const BLOCK: usize = 512;

/// The dump file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As in the archive: relative, without the snapshot path's leading `/`.
    pub name: String,
    pub size: u64,
    /// Modification time, whole seconds since the epoch. For a `--stdin` file restic records the
    /// snapshot's own time here, which tells two snapshots of the same size apart.
    pub mtime: i64,
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads up to the first regular file's header; `None` for an archive without one. Directory entries
/// are skipped; anything else (a symlink, a device) is not a dump.
pub async fn first_file<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Entry>> {
    let mut block = [0u8; BLOCK];
    let mut long_name: Option<String> = None;
    let mut pax_size: Option<u64> = None;
    let mut pax_mtime: Option<i64> = None;
    loop {
        if !read_block(reader, &mut block).await? || block.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let size = parse_number(&block[124..136])?;
        match block[156] {
            b'0' | 0 | b'7' => {
                let name = long_name.take().unwrap_or_else(|| header_name(&block));
                let size = pax_size.take().unwrap_or(size);
                let mtime = match pax_mtime.take() {
                    Some(mtime) => mtime,
                    None => i64::try_from(parse_number(&block[136..148])?)
                        .map_err(|_| invalid("bad tar mtime"))?,
                };
                return Ok(Some(Entry { name, size, mtime }));
            }
            b'5' => {
                long_name = None;
                pax_size = None;
                pax_mtime = None;
                skip(reader, size).await?;
            }
            b'x' => {
                let data = read_data(reader, size).await?;
                for (key, value) in pax_records(&data)? {
                    match key.as_str() {
                        "path" => long_name = Some(value),
                        "size" => pax_size = Some(value.parse().map_err(|_| invalid("bad PAX size"))?),
                        // Seconds, possibly with a fraction ("1795458000.123456789").
                        "mtime" => {
                            let seconds = value.split('.').next().unwrap_or_default();
                            pax_mtime = Some(seconds.parse().map_err(|_| invalid("bad PAX mtime"))?);
                        }
                        _ => {}
                    }
                }
            }
            b'L' => {
                let data = read_data(reader, size).await?;
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            }
            b'g' => skip(reader, size).await?,
            other => {
                return Err(invalid(format!(
                    "the snapshot holds a tar entry of type {:?}, not a dump file",
                    other as char
                )))
            }
        }
    }
}

/// After the file's `size` bytes: its padding and the end of the archive. Returns false if another
/// entry follows (the snapshot is not a single dump).
pub async fn finish<R: AsyncRead + Unpin>(reader: &mut R, size: u64) -> std::io::Result<bool> {
    skip_exact(reader, padding(size)).await?;
    let mut block = [0u8; BLOCK];
    let mut single = true;
    while read_block(reader, &mut block).await? {
        if block.iter().any(|b| *b != 0) {
            single = false;
        }
    }
    Ok(single)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Reads one block; false at a clean end of input.
async fn read_block<R: AsyncRead + Unpin>(reader: &mut R, block: &mut [u8; BLOCK]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        let n = reader.read(&mut block[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(invalid("the archive ends in the middle of a block"));
        }
        filled += n;
    }
    Ok(true)
}

async fn read_data<R: AsyncRead + Unpin>(reader: &mut R, size: u64) -> std::io::Result<Vec<u8>> {
    if size > 1024 * 1024 {
        return Err(invalid("tar extended header too large"));
    }
    let mut data = vec![0u8; size as usize];
    reader.read_exact(&mut data).await?;
    skip_exact(reader, padding(size)).await?;
    Ok(data)
}

async fn skip<R: AsyncRead + Unpin>(reader: &mut R, size: u64) -> std::io::Result<()> {
    skip_exact(reader, size + padding(size)).await
}

async fn skip_exact<R: AsyncRead + Unpin>(reader: &mut R, mut count: u64) -> std::io::Result<()> {
    let mut buffer = [0u8; BLOCK];
    while count > 0 {
        let want = count.min(BLOCK as u64) as usize;
        reader.read_exact(&mut buffer[..want]).await?;
        count -= want as u64;
    }
    Ok(())
}

fn header_name(block: &[u8; BLOCK]) -> String {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(0..100);
    let prefix = if &block[257..262] == b"ustar" {
        field(345..500)
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// Octal (NUL/space padded), or GNU base-256 when the high bit is set.
fn parse_number(field: &[u8]) -> std::io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for byte in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*byte)))
                .ok_or_else(|| invalid("tar size overflows"))?;
        }
        return Ok(value);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| invalid(format!("bad tar number {text:?}")))
}

/// `<length> <key>=<value>\n` records.
fn pax_records(data: &[u8]) -> std::io::Result<Vec<(String, String)>> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| invalid("bad PAX record"))?;
        let length: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|l| *l > space && *l <= rest.len())
            .ok_or_else(|| invalid("bad PAX record length"))?;
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            records.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
        }
        rest = &rest[length..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}");
        block[124..135].copy_from_slice(size.as_bytes());
        let mtime = format!("{:011o}", 1_795_458_000u64);
        block[136..147].copy_from_slice(mtime.as_bytes());
        block[156] = kind;
        block[257..263].copy_from_slice(b"ustar\0");
        block
    }

    fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = parts.concat();
        out.extend(vec![0u8; 2 * BLOCK]);
        out
    }

    #[tokio::test]
    async fn the_one_file_comes_out_with_its_size() {
        let content = b"PGDMP hello".to_vec();
        let mut padded = content.clone();
        padded.resize(BLOCK, 0);
        let data = archive(&[
            header("dir/", 0, b'5'),
            header("dir/hotel.pgdump", 11, b'0'),
            padded,
        ]);
        let mut reader = &data[..];
        let entry = first_file(&mut reader).await.expect("header").expect("a file");
        assert_eq!(
            entry,
            Entry {
                name: "dir/hotel.pgdump".into(),
                size: 11,
                mtime: 1_795_458_000,
            }
        );
        let mut body = vec![0u8; 11];
        reader.read_exact(&mut body).await.expect("body");
        assert_eq!(body, content);
        assert!(finish(&mut reader, 11).await.expect("end"));
    }

    #[tokio::test]
    async fn pax_headers_override_name_and_size_and_a_second_file_is_noticed() {
        let records = b"29 path=a-very-long-name.sql\n11 size=12\n22 mtime=1795458001.5\n".to_vec();
        let mut pax = records.clone();
        pax.resize(BLOCK, 0);
        let mut body = b"0123456789ab".to_vec();
        body.resize(BLOCK, 0);
        let mut second = header("other.sql", 1, b'0');
        second.extend(vec![b'x'; 1]);
        second.resize(2 * BLOCK, 0);
        let data = archive(&[
            header("PaxHeaders/x", records.len() as u64, b'x'),
            pax,
            header("short", 0, b'0'),
            body,
            second,
        ]);
        let mut reader = &data[..];
        let entry = first_file(&mut reader).await.expect("header").expect("a file");
        assert_eq!(
            entry,
            Entry {
                name: "a-very-long-name.sql".into(),
                size: 12,
                mtime: 1_795_458_001,
            }
        );
        skip_exact(&mut reader, 12).await.expect("body");
        assert!(!finish(&mut reader, 12).await.expect("end"));
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(parse_number(b"00000005670\0").unwrap(), 3000);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 2;
        assert_eq!(parse_number(&big).unwrap(), 513);
    }
}
