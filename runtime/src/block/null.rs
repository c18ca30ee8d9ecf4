//! The `null-co` and `null-aio` drivers: an image that discards writes and
//! reads zeroes, for benchmarks and tests. `latency-ns` delays every
//! request.

use std::time::Duration;

use qapi::types::BlockdevOptionsNull;
use qapi::QmpError;
use serde_json::{Map, Value};

use super::{AllocatedSize, BlockDriver, Extent, IoBuf, IoFuture, WriteFlags, ZeroFlags};

/// A null node.
pub struct NullDriver {
    name: &'static str,
    size: u64,
    read_zeroes: bool,
    latency: Duration,
}

impl NullDriver {
    /// Opens a null node of driver `name` (`null-co` or `null-aio`).
    pub fn open(name: &'static str, o: &BlockdevOptionsNull) -> Result<NullDriver, QmpError> {
        let size = match o.size {
            None => 1 << 30,
            Some(s) if s < 0 => {
                return Err(QmpError::generic(format!(
                    "Value '{s}' is out of range for parameter 'size'"
                )))
            }
            Some(s) => s as u64,
        };
        Ok(NullDriver {
            name,
            size,
            read_zeroes: o.read_zeroes.unwrap_or(false),
            latency: Duration::from_nanos(o.latency_ns.unwrap_or(0)),
        })
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl BlockDriver for NullDriver {
    fn driver_name(&self) -> &'static str {
        self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, _offset: u64, len: usize) -> IoFuture<'_, IoBuf> {
        Box::pin(async move {
            self.delay().await;
            Ok(IoBuf::new(len, 1))
        })
    }

    fn write(&self, _offset: u64, _data: IoBuf, _flags: WriteFlags) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.delay().await;
            Ok(())
        })
    }

    /// QEMU's null drivers have no write-zeroes of their own: the block
    /// layer writes zero buffers, or fails with ENOTSUP when falling back
    /// is not allowed.
    fn write_zeroes(&self, _offset: u64, _len: u64, flags: ZeroFlags) -> IoFuture<'_, ()> {
        Box::pin(async move {
            if flags.no_fallback {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP));
            }
            self.delay().await;
            Ok(())
        })
    }

    fn discard(&self, _offset: u64, _len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.delay().await;
            Ok(())
        })
    }

    fn flush(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.delay().await;
            Ok(())
        })
    }

    fn block_status(&self, _offset: u64, len: u64) -> IoFuture<'_, Extent> {
        let zero = self.read_zeroes;
        Box::pin(async move {
            Ok(Extent {
                len,
                zero,
                data: false,
                depth: u32::from(zero),
            })
        })
    }

    fn truncate(&self, _size: u64) -> IoFuture<'_, ()> {
        Box::pin(async {
            Err(super::user_error(
                "Image format driver does not support resize",
            ))
        })
    }

    fn protocol_name(&self) -> Option<&'static str> {
        Some(self.name)
    }

    fn allocated_size(&self) -> AllocatedSize {
        AllocatedSize::Known(0)
    }

    fn strong_runtime_opts(&self) -> &'static [&'static str] {
        &["size", "read-zeroes"]
    }

    /// `null-co://` unless an option that changes what it shows was given.
    fn refresh_filename(&self, full: &Map<String, Value>) -> Option<Option<String>> {
        let plain = full
            .keys()
            .all(|k| k == "filename" || k == "driver" || k == "latency-ns");
        Some(plain.then(|| format!("{}://", self.name)))
    }
}
