//! The generated command trait, implemented for [`Daemon`]: each method
//! delegates to the module that owns the feature. Commands not listed here
//! keep the generated default, a `GenericError` saying they are not
//! implemented yet.

use std::future::Future;
use std::sync::OnceLock;

use qapi::commands::Commands;
use qapi::types::*;
use qapi::QmpError;

use super::{Daemon, PACKAGE, QEMU_VERSION};
use crate::qmp::CommandContext;
use crate::{block, chardev, export, jobs, objects, qmp};

fn ready<T: Send>(r: T) -> impl Future<Output = T> + Send {
    std::future::ready(r)
}

/// The introspection data, read once.
fn schema_info() -> &'static Result<Vec<SchemaInfo>, String> {
    static INFO: OnceLock<Result<Vec<SchemaInfo>, String>> = OnceLock::new();
    INFO.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(qapi::introspect::SCHEMA_JSON).map_err(|e| e.to_string())?;
        qapi::visit::from_value(&v, qapi::visit::Mode::Json).map_err(|e| e.0)
    })
}

impl Commands for Daemon {
    type Context = CommandContext;

    // control.json

    fn qmp_capabilities(
        &self,
        cx: &CommandContext,
        args: QmpCapabilitiesArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(qmp::negotiate(cx, args))
    }

    fn query_version(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<VersionInfo, QmpError>> + Send {
        let (major, minor, micro) = QEMU_VERSION;
        ready(Ok(VersionInfo {
            qemu: VersionTriple {
                major,
                minor,
                micro,
            },
            package: PACKAGE.to_string(),
        }))
    }

    fn query_commands(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<CommandInfo>, QmpError>> + Send {
        // QEMU lists commands in reverse registration order.
        ready(Ok(qapi::commands::COMMANDS
            .iter()
            .rev()
            .map(|c| CommandInfo {
                name: c.name.to_string(),
            })
            .collect()))
    }

    async fn quit(&self, _cx: &CommandContext) -> Result<(), QmpError> {
        // QSD closes the exports, then cancels the jobs on its way out,
        // before the reply (their events come first, in that order).
        export::close_all(self).await;
        jobs::cancel_sync_all(self).await;
        self.request_quit();
        Ok(())
    }

    // introspect.json

    fn query_qmp_schema(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<SchemaInfo>, QmpError>> + Send {
        ready(match schema_info() {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(QmpError::generic(format!(
                "introspection data is broken: {e}"
            ))),
        })
    }

    // char.json

    fn query_chardev(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<ChardevInfo>, QmpError>> + Send {
        ready(chardev::qmp::query_chardev(self))
    }

    fn query_chardev_backends(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<ChardevBackendInfo>, QmpError>> + Send {
        ready(chardev::qmp::query_chardev_backends(self))
    }

    fn ringbuf_write(
        &self,
        _cx: &CommandContext,
        args: RingbufWriteArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(chardev::qmp::ringbuf_write(self, args))
    }

    fn ringbuf_read(
        &self,
        _cx: &CommandContext,
        args: RingbufReadArgs,
    ) -> impl Future<Output = Result<String, QmpError>> + Send {
        ready(chardev::qmp::ringbuf_read(self, args))
    }

    fn chardev_add(
        &self,
        _cx: &CommandContext,
        args: ChardevAddArgs,
    ) -> impl Future<Output = Result<ChardevReturn, QmpError>> + Send {
        ready(chardev::qmp::chardev_add(self, args))
    }

    fn chardev_change(
        &self,
        _cx: &CommandContext,
        args: ChardevChangeArgs,
    ) -> impl Future<Output = Result<ChardevReturn, QmpError>> + Send {
        ready(chardev::qmp::chardev_change(self, args))
    }

    fn chardev_remove(
        &self,
        _cx: &CommandContext,
        args: ChardevRemoveArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(chardev::qmp::chardev_remove(self, args))
    }

    fn chardev_send_break(
        &self,
        _cx: &CommandContext,
        args: ChardevSendBreakArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(chardev::qmp::chardev_send_break(self, args))
    }

    // qom.json

    fn qom_list(
        &self,
        _cx: &CommandContext,
        args: QomListArgs,
    ) -> impl Future<Output = Result<Vec<ObjectPropertyInfo>, QmpError>> + Send {
        ready(objects::qmp::qom_list(self, args))
    }

    fn qom_get(
        &self,
        _cx: &CommandContext,
        args: QomGetArgs,
    ) -> impl Future<Output = Result<serde_json::Value, QmpError>> + Send {
        ready(objects::qmp::qom_get(self, args))
    }

    fn qom_set(
        &self,
        _cx: &CommandContext,
        args: QomSetArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(objects::qmp::qom_set(self, args))
    }

    fn qom_list_types(
        &self,
        _cx: &CommandContext,
        args: QomListTypesArgs,
    ) -> impl Future<Output = Result<Vec<ObjectTypeInfo>, QmpError>> + Send {
        ready(objects::qmp::qom_list_types(self, args))
    }

    fn qom_list_properties(
        &self,
        _cx: &CommandContext,
        args: QomListPropertiesArgs,
    ) -> impl Future<Output = Result<Vec<ObjectPropertyInfo>, QmpError>> + Send {
        ready(objects::qmp::qom_list_properties(self, args))
    }

    fn object_add(
        &self,
        _cx: &CommandContext,
        args: ObjectOptions,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(objects::qmp::object_add(self, args))
    }

    fn object_del(
        &self,
        _cx: &CommandContext,
        args: ObjectDelArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(objects::qmp::object_del(self, args))
    }

    // job.json

    fn job_pause(
        &self,
        _cx: &CommandContext,
        args: JobPauseArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_pause(self, args)
    }

    fn job_resume(
        &self,
        _cx: &CommandContext,
        args: JobResumeArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_resume(self, args)
    }

    fn job_cancel(
        &self,
        _cx: &CommandContext,
        args: JobCancelArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_cancel(self, args)
    }

    fn job_complete(
        &self,
        _cx: &CommandContext,
        args: JobCompleteArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_complete(self, args)
    }

    fn job_dismiss(
        &self,
        _cx: &CommandContext,
        args: JobDismissArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_dismiss(self, args)
    }

    fn job_finalize(
        &self,
        _cx: &CommandContext,
        args: JobFinalizeArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::job_finalize(self, args)
    }

    fn query_jobs(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<JobInfo>, QmpError>> + Send {
        ready(jobs::qmp::query_jobs(self))
    }

    // block-core.json: block jobs

    fn block_job_set_speed(
        &self,
        _cx: &CommandContext,
        args: BlockJobSetSpeedArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_set_speed(self, args)
    }

    fn block_job_cancel(
        &self,
        _cx: &CommandContext,
        args: BlockJobCancelArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_cancel(self, args)
    }

    fn block_job_pause(
        &self,
        _cx: &CommandContext,
        args: BlockJobPauseArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_pause(self, args)
    }

    fn block_job_resume(
        &self,
        _cx: &CommandContext,
        args: BlockJobResumeArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_resume(self, args)
    }

    fn block_job_complete(
        &self,
        _cx: &CommandContext,
        args: BlockJobCompleteArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_complete(self, args)
    }

    fn block_job_dismiss(
        &self,
        _cx: &CommandContext,
        args: BlockJobDismissArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_dismiss(self, args)
    }

    fn block_job_finalize(
        &self,
        _cx: &CommandContext,
        args: BlockJobFinalizeArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_finalize(self, args)
    }

    fn block_job_change(
        &self,
        _cx: &CommandContext,
        args: BlockJobChangeOptions,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        jobs::qmp::block_job_change(self, args)
    }

    // block-core.json: image creation

    fn blockdev_create(
        &self,
        _cx: &CommandContext,
        args: BlockdevCreateArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        block::create::blockdev_create(self, args)
    }

    fn x_blockdev_amend(
        &self,
        _cx: &CommandContext,
        args: XBlockdevAmendArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        block::create::x_blockdev_amend(self, args)
    }

    // block-core.json

    fn blockdev_add(
        &self,
        _cx: &CommandContext,
        args: BlockdevOptions,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(block::qmp::blockdev_add(self, args))
    }

    fn blockdev_del(
        &self,
        _cx: &CommandContext,
        args: BlockdevDelArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(block::qmp::blockdev_del(self, args))
    }

    fn blockdev_reopen(
        &self,
        _cx: &CommandContext,
        args: BlockdevReopenArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(block::qmp::blockdev_reopen(self, args))
    }

    fn blockdev_set_active(
        &self,
        _cx: &CommandContext,
        args: BlockdevSetActiveArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(block::qmp::blockdev_set_active(self, args))
    }

    fn query_named_block_nodes(
        &self,
        _cx: &CommandContext,
        args: QueryNamedBlockNodesArgs,
    ) -> impl Future<Output = Result<Vec<BlockDeviceInfo>, QmpError>> + Send {
        ready(block::qmp::query_named_block_nodes(self, args))
    }

    fn query_block(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<BlockInfo>, QmpError>> + Send {
        ready(block::qmp::query_block(self))
    }

    fn query_blockstats(
        &self,
        _cx: &CommandContext,
        args: QueryBlockstatsArgs,
    ) -> impl Future<Output = Result<Vec<BlockStats>, QmpError>> + Send {
        ready(block::qmp::query_blockstats(self, args))
    }

    fn x_debug_query_block_graph(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<XDbgBlockGraph, QmpError>> + Send {
        ready(block::qmp::x_debug_query_block_graph(self))
    }

    fn block_resize(
        &self,
        _cx: &CommandContext,
        args: BlockResizeArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        let d = self.clone();
        async move { block::qmp::block_resize(&d, args).await }
    }

    fn block_set_write_threshold(
        &self,
        _cx: &CommandContext,
        args: BlockSetWriteThresholdArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(block::qmp::block_set_write_threshold(self, args))
    }

    // block-export.json

    fn nbd_server_start(
        &self,
        _cx: &CommandContext,
        args: NbdServerOptionsLegacy,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(export::nbd::server::qmp_nbd_server_start(self, args))
    }

    fn nbd_server_stop(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        let d = self.clone();
        async move { export::nbd::server::qmp_nbd_server_stop(&d).await }
    }

    fn nbd_server_add(
        &self,
        _cx: &CommandContext,
        args: NbdServerAddOptions,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(export::nbd_server_add(self, args))
    }

    fn nbd_server_remove(
        &self,
        _cx: &CommandContext,
        args: NbdServerRemoveArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(export::nbd_server_remove(self, args))
    }

    fn block_export_add(
        &self,
        _cx: &CommandContext,
        args: BlockExportOptions,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        ready(export::block_export_add(self, args))
    }

    fn block_export_del(
        &self,
        _cx: &CommandContext,
        args: BlockExportDelArgs,
    ) -> impl Future<Output = Result<(), QmpError>> + Send {
        let d = self.clone();
        async move { export::block_export_del_any(&d, args).await }
    }

    fn query_block_exports(
        &self,
        _cx: &CommandContext,
    ) -> impl Future<Output = Result<Vec<BlockExportInfo>, QmpError>> + Send {
        ready(export::query_block_exports(self))
    }
}
