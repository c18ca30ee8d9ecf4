//! `--help` and `--version` texts.
//!
//! The option block of `--help` is QSD 10.0.2's, byte for byte, so that
//! anything reading it (people, scripts) finds the same interface; the first
//! and last lines say that this is qsd. `--version` keeps QSD's layout
//! (`NAME version X.Y.Z (PACKAGE)` and one more line): the version number is
//! the QEMU interface version we implement, the same one QMP `query-version`
//! reports, and PACKAGE is our own package string.

use qsd_runtime::daemon::{PACKAGE, QEMU_VERSION};

/// The options part of the help text, identical to QSD 10.0.2's.
pub const OPTIONS_HELP: &str = "  -h, --help             display this help and exit
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                         specify tracing options
  -V, --version          output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block backend

  --chardev <options>    configure a character device backend
                         (see the qemu(1) man page for possible options)

  --daemonize            daemonize the process, and have the parent exit
                         once startup is complete

  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
           [,writable=on|off][,bitmap=<name>]
                         export the specified block node over NBD
                         (requires --nbd-server)

  --export [type=]fuse,id=<id>,node-name=<node-name>,mountpoint=<file>
           [,growable=on|off][,writable=on|off][,allow-other=on|off|auto]
                         export the specified block node over FUSE

  --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,
           addr.type=unix,addr.path=<socket-path>[,writable=on|off]
           [,logical-block-size=<block-size>][,num-queues=<num-queues>]
                         export the specified block node as a
                         vhost-user-blk device over UNIX domain socket
  --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,
           addr.type=fd,addr.str=<fd>[,writable=on|off]
           [,logical-block-size=<block-size>][,num-queues=<num-queues>]
                         export the specified block node as a
                         vhost-user-blk device over file descriptor

  --export [type=]vduse-blk,id=<id>,node-name=<node-name>
           ,name=<vduse-name>[,writable=on|off]
           [,num-queues=<num-queues>][,queue-size=<queue-size>]
           [,logical-block-size=<logical-block-size>]
           [,serial=<serial-number>]
                         export the specified block node as a
                         vduse-blk device

  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                         configure a QMP monitor

  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>
               [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
  --nbd-server addr.type=unix,addr.path=<path>
               [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
                         start an NBD server for exporting block nodes

  --object help          list object types that can be added
  --object <type>,help   list properties for the given object type
  --object <type>[,<property>=<value>...]
                         create a new object of type <type>, setting
                         properties in the order they are specified. Note
                         that the 'id' property must be set.
                         See the qemu(1) man page for documentation of the
                         objects that can be added.

  --pidfile <path>       write process ID to a file after startup
";

/// The `--help` text for a program called `prog` (QSD prints the base name
/// of `argv[0]` in the usage line).
pub fn help_text(prog: &str) -> String {
    let (major, minor, micro) = QEMU_VERSION;
    format!(
        "Usage: {prog} [options]\n\
         QEMU storage daemon ({PACKAGE}, implementing the interface of \
         qemu-storage-daemon {major}.{minor}.{micro})\n\
         \n\
         {OPTIONS_HELP}\
         \n\
         QMP commands are described in the qsd-qmp-ref(7) manual page.\n"
    )
}

/// The `--version` text. Unlike `--help`, QSD does not take the name from
/// `argv[0]` here.
pub fn version_text() -> String {
    let (major, minor, micro) = QEMU_VERSION;
    format!(
        "qsd version {major}.{minor}.{micro} ({PACKAGE})\n\
         {PACKAGE} implements the interface of qemu-storage-daemon {major}.{minor}.{micro}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_layout() {
        let h = help_text("qsd");
        assert!(h.starts_with("Usage: qsd [options]\nQEMU storage daemon ("));
        assert!(h.contains("\n\n  -h, --help  "));
        assert!(h.contains("write process ID to a file after startup\n\nQMP commands"));
    }

    #[test]
    fn version_says_which_interface() {
        let v = version_text();
        assert!(v.starts_with("qsd version 10.0.2 (qsd "));
        assert_eq!(v.lines().count(), 2);
    }
}
