//! Load for `make bench` that wrk cannot give: requests at a fixed rate with every latency
//! kept (wrk has no fixed-rate mode, Debian's h2load may lack `--rps`), each of a list of
//! requests sent once, and the HTTP/1.1 response reader both use. Plain keep-alive HTTP/1.1
//! over loopback, one thread per connection; throughput and verdicts are the caller's.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// What a response was: its status, how many body bytes arrived, and the last of them.
#[derive(Debug)]
pub struct ResponseSummary {
    pub status: u16,
    pub body_bytes: u64,
    /// The body's last bytes (at most `TAIL_BYTES`), to check a stream ended as it should.
    pub tail: Vec<u8>,
}

pub const TAIL_BYTES: usize = 256;

/// Reads one HTTP/1.1 response from a keep-alive connection: a `Content-Length` body or a
/// chunked one, counted rather than kept (a 2 MB stream needs no 2 MB buffer).
pub fn read_response(reader: &mut impl BufRead) -> anyhow::Result<ResponseSummary> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP status line: {line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed inside the response head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse::<u64>()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = BodyCounter::default();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            body.take(reader, size)?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else {
        body.take(reader, content_length.unwrap_or(0))?;
    }
    Ok(ResponseSummary {
        status,
        body_bytes: body.bytes,
        tail: body.tail,
    })
}

#[derive(Default)]
struct BodyCounter {
    bytes: u64,
    tail: Vec<u8>,
}

impl BodyCounter {
    fn take(&mut self, reader: &mut impl BufRead, mut size: u64) -> anyhow::Result<()> {
        while size > 0 {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                bail!("the connection closed inside a response body");
            }
            let n = available
                .len()
                .min(usize::try_from(size).unwrap_or(usize::MAX));
            self.tail.extend_from_slice(&available[..n]);
            if self.tail.len() > TAIL_BYTES {
                self.tail.drain(..self.tail.len() - TAIL_BYTES);
            }
            reader.consume(n);
            self.bytes += n as u64;
            size -= n as u64;
        }
        Ok(())
    }
}

/// A keep-alive connection that sends a request and reads its answer.
pub struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn exchange(&mut self, request: &[u8]) -> anyhow::Result<ResponseSummary> {
        self.writer.write_all(request)?;
        read_response(&mut self.reader)
    }
}

/// A GET with a bearer token, as raw HTTP/1.1.
pub fn get_request(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// Every latency of a fixed-rate run, sorted.
#[derive(Debug)]
pub struct Latencies {
    sorted: Vec<Duration>,
    /// Requests sent after their scheduled time (the server, or this client, fell behind).
    pub late: usize,
    /// What the run achieved: answers per second.
    pub achieved_rate: f64,
}

impl Latencies {
    /// The `p`th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn count(&self) -> usize {
        self.sorted.len()
    }
}

/// Sends `request` at `rate` per second in total for `duration`, over `connections`
/// keep-alive connections each on its own fixed schedule (interleaved), and measures each
/// latency from the time the request was scheduled, not sent: when an answer is slow the
/// requests queued behind it count their wait (no coordinated omission). Every answer must
/// be a 200.
pub fn fixed_rate(
    addr: SocketAddr,
    request: &[u8],
    rate: f64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Latencies> {
    anyhow::ensure!(
        rate > 0.0 && connections > 0,
        "a fixed rate needs a rate and connections"
    );
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let mut opened = (0..connections)
        .map(|_| Connection::open(addr))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every connection is open before the first send is due.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + duration;
    let results = std::thread::scope(|scope| {
        let threads: Vec<_> = opened
            .iter_mut()
            .enumerate()
            .map(|(i, connection)| {
                scope.spawn(move || {
                    // Sleeps wake within microseconds, not the default 50 µs timer slack.
                    unsafe {
                        libc::prctl(libc::PR_SET_TIMERSLACK, 1);
                    }
                    let mut samples = Vec::new();
                    let mut late = 0;
                    let mut scheduled = start + interval.mul_f64(i as f64 / connections as f64);
                    while scheduled < end {
                        let now = Instant::now();
                        if now < scheduled {
                            std::thread::sleep(scheduled - now);
                        } else if now > scheduled + Duration::from_micros(100) {
                            late += 1;
                        }
                        let answer = connection.exchange(request)?;
                        if answer.status != 200 {
                            bail!("a fixed-rate request was answered {}", answer.status);
                        }
                        samples.push(scheduled.elapsed());
                        scheduled += interval;
                    }
                    Ok((samples, late))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().map_err(|_| anyhow!("a load thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = start.elapsed();
    let late = results.iter().map(|(_, late)| late).sum();
    let mut sorted: Vec<Duration> = results.into_iter().flat_map(|(s, _)| s).collect();
    sorted.sort_unstable();
    Ok(Latencies {
        achieved_rate: sorted.len() as f64 / elapsed.as_secs_f64(),
        sorted,
        late,
    })
}

/// Sends each request once, as fast as answers come, over `connections` keep-alive
/// connections; every answer must be a 200. Returns how long it took.
pub fn each_once(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    connections: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let per_connection = requests.len().div_ceil(connections.max(1)).max(1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = requests
            .chunks(per_connection)
            .map(|share| {
                scope.spawn(move || {
                    let mut connection = Connection::open(addr)?;
                    for request in share {
                        let answer = connection.exchange(request)?;
                        if answer.status != 200 {
                            bail!("a request was answered {}", answer.status);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().map_err(|_| anyhow!("a load thread panicked"))?)
    })?;
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn chunked_and_sized_bodies_are_counted_and_the_connection_stays_usable() {
        let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnopeNEXT";
        let mut reader = &wire[..];
        let first = read_response(&mut reader).unwrap();
        assert_eq!(
            (first.status, first.body_bytes, first.tail.as_slice()),
            (200, 5, &b"abcde"[..])
        );
        let second = read_response(&mut reader).unwrap();
        assert_eq!((second.status, second.body_bytes), (404, 4));
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies = Latencies {
            sorted: (1..=100).map(Duration::from_micros).collect(),
            late: 0,
            achieved_rate: 0.0,
        };
        assert_eq!(latencies.percentile(50.0), Duration::from_micros(50));
        assert_eq!(latencies.percentile(99.0), Duration::from_micros(99));
        assert_eq!(latencies.percentile(100.0), Duration::from_micros(100));
    }
}
