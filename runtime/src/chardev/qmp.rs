//! Chardev QMP commands, with QSD 10.0.2's rules and error texts.

use qapi::types::*;
use qapi::QmpError;

use super::{create_with, ringbuf, Origin, BACKENDS};
use crate::Daemon;

/// `query-chardev`: every chardev with its current name and whether a
/// frontend is attached, in QEMU's order.
pub fn query_chardev(d: &Daemon) -> Result<Vec<ChardevInfo>, QmpError> {
    Ok(d.chardevs
        .list()
        .iter()
        .map(|c| ChardevInfo {
            label: c.id.clone(),
            filename: c.filename(),
            frontend_open: c.has_frontend(),
        })
        .collect())
}

/// `query-chardev-backends`: the backend types of this build.
pub fn query_chardev_backends(_d: &Daemon) -> Result<Vec<ChardevBackendInfo>, QmpError> {
    Ok(BACKENDS
        .iter()
        .map(|n| ChardevBackendInfo {
            name: n.to_string(),
        })
        .collect())
}

fn ring(d: &Daemon, device: &str) -> Result<std::sync::Arc<super::Chardev>, QmpError> {
    let dev = d
        .chardevs
        .get(device)
        .ok_or_else(|| QmpError::generic(format!("Device '{device}' not found")))?;
    if dev.ringbuf().is_none() {
        return Err(QmpError::generic(format!(
            "{device} is not a ringbuf device"
        )));
    }
    Ok(dev)
}

/// `ringbuf-write`: stores data in the ring (the frontend does not see it).
pub fn ringbuf_write(d: &Daemon, args: RingbufWriteArgs) -> Result<(), QmpError> {
    let dev = ring(d, &args.device)?;
    let bytes = ringbuf::write_bytes(&args.data, args.format).map_err(QmpError::generic)?;
    if let Some(r) = dev.ringbuf() {
        r.write(&bytes);
    }
    Ok(())
}

/// `ringbuf-read`: takes up to `size` bytes from the ring.
pub fn ringbuf_read(d: &Daemon, args: RingbufReadArgs) -> Result<String, QmpError> {
    let dev = ring(d, &args.device)?;
    if args.size <= 0 {
        return Err(QmpError::generic("size must be greater than zero"));
    }
    let bytes = dev
        .ringbuf()
        .map(|r| r.read(args.size as u64))
        .unwrap_or_default();
    Ok(ringbuf::read_string(&bytes, args.format))
}

/// `chardev-add`; the result names the pty of a `pty` chardev.
pub fn chardev_add(d: &Daemon, args: ChardevAddArgs) -> Result<ChardevReturn, QmpError> {
    let pty = create_with(d, args.id, args.backend, &Origin::Qmp)?;
    Ok(ChardevReturn { pty })
}

/// `chardev-change`: replaces a chardev's backend.
///
/// Without a frontend the old chardev is removed and the new one added
/// (if that fails the old one is gone, as in QEMU). With one, the frontend
/// would have to support hot-swapping, which a QMP monitor (the only
/// frontend of this daemon) does not.
pub fn chardev_change(d: &Daemon, args: ChardevChangeArgs) -> Result<ChardevReturn, QmpError> {
    let id = args.id;
    let Some(dev) = d.chardevs.get(&id) else {
        return Err(QmpError::generic(format!("Chardev '{id}' does not exist")));
    };
    if matches!(
        dev.kind(),
        ChardevBackendKind::Mux | ChardevBackendKind::Hub
    ) {
        return Err(QmpError::generic(
            "For mux or hub device hotswap is not supported yet",
        ));
    }
    if !dev.has_frontend() {
        drop(dev);
        d.chardevs.remove(&id);
        return chardev_add(
            d,
            ChardevAddArgs {
                id,
                backend: args.backend,
            },
        );
    }
    Err(QmpError::generic(
        "Chardev user does not support chardev hotswap",
    ))
}

/// `chardev-remove`: refused while a frontend uses the chardev.
pub fn chardev_remove(d: &Daemon, args: ChardevRemoveArgs) -> Result<(), QmpError> {
    let id = args.id;
    let Some(dev) = d.chardevs.get(&id) else {
        return Err(QmpError::generic(format!("Chardev '{id}' not found")));
    };
    if dev.has_frontend() {
        return Err(QmpError::generic(format!("Chardev '{id}' is busy")));
    }
    drop(dev);
    d.chardevs.remove(&id);
    Ok(())
}

/// `chardev-send-break`: a break event for the frontend, which a QMP
/// monitor ignores.
pub fn chardev_send_break(d: &Daemon, args: ChardevSendBreakArgs) -> Result<(), QmpError> {
    if d.chardevs.get(&args.id).is_none() {
        return Err(QmpError::generic(format!(
            "Chardev '{}' not found",
            args.id
        )));
    }
    Ok(())
}
