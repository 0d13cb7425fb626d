//! One read for a Parquet file's footer and metadata.
//!
//! delta-rs's scan builds its Parquet sources without a metadata size hint, so the
//! reader fetches a file's last 8 bytes to learn the metadata's length, then the
//! metadata, then the data: on an object store, three round trips one after another
//! for each file a run reads. DataFusion's own Parquet tables read the last
//! `datafusion.execution.parquet.metadata_size_hint` bytes (512 KiB by default) at
//! once instead, footer and metadata together, and a small file whole. This physical
//! optimizer rule gives delta-rs's scans that hint (but those of files with deletion
//! vectors, whose node must keep the source it planned).

use std::sync::Arc;

use deltalake::datafusion::common::Result;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use deltalake::datafusion::datasource::physical_plan::{FileSource, ParquetSource};
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;

/// Sets the session's Parquet metadata size hint on every Parquet scan of a plan.
#[derive(Debug, Default)]
pub(crate) struct ParquetMetadataHint;

impl PhysicalOptimizerRule for ParquetMetadataHint {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(hint) = config.execution.parquet.metadata_size_hint else {
            return Ok(plan);
        };
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((scan, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            // A scan of files with deletion vectors reads row numbers (a virtual
            // column), and delta-rs's deletion-vector node refuses a source other than
            // the one it planned: such scans keep their three reads.
            if !parquet.table_schema().virtual_columns().is_empty() {
                return Ok(Transformed::no(node));
            }
            let mut scan = scan.clone();
            scan.file_source = Arc::new(parquet.clone().with_metadata_size_hint(hint));
            let hinted: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(scan);
            Ok(Transformed::yes(hinted))
        })
        .data()
    }

    fn name(&self) -> &str {
        "parquet_metadata_hint"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use deltalake::datafusion::common::tree_node::TreeNode;
    use deltalake::datafusion::datasource::physical_plan::ParquetSource;
    use deltalake::datafusion::datasource::source::DataSourceExec;

    /// The metadata size hint of each Parquet source of a plan of a Delta scan, as
    /// their `Debug` shows it (the hint has no accessor; the source's own field is the
    /// last of that name, after the table options').
    async fn parquet_hints(ctx: &deltalake::datafusion::prelude::SessionContext) -> Vec<String> {
        let plan = ctx
            .sql("SELECT x FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut sources = Vec::new();
        plan.apply(|node| {
            if let Some(exec) = node.downcast_ref::<DataSourceExec>()
                && let Some((_, parquet)) = exec.downcast_to_file_source::<ParquetSource>()
            {
                let debug = format!("{parquet:?}");
                let (_, hint) = debug.rsplit_once("metadata_size_hint: ").unwrap();
                sources.push(hint.split(',').next().unwrap().to_owned());
            }
            Ok(deltalake::datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        sources
    }

    #[tokio::test]
    async fn a_runs_delta_scans_read_footer_and_metadata_in_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        let table = deltalake::DeltaTableBuilder::from_url(url)
            .unwrap()
            .build()
            .unwrap()
            .write(vec![batch])
            .await
            .unwrap();

        let hint = "Some(524288)";
        let plain = deltalake::delta_datafusion::DeltaSessionContext::default().into_inner();
        plain
            .register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let sources = parquet_hints(&plain).await;
        assert!(
            !sources.is_empty() && sources.iter().all(|s| s == "None"),
            "delta-rs's scan alone sets no hint: {sources:?}"
        );

        let run = crate::run::session_context(None, None);
        run.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let sources = parquet_hints(&run).await;
        assert!(
            !sources.is_empty() && sources.iter().all(|s| s == hint),
            "{sources:?}"
        );
        let rows: usize = run
            .sql("SELECT x FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 3);
    }
}
