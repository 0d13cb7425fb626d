//! One read for a small Parquet file, and one for a larger file's footer and metadata.
//!
//! delta-rs's scan builds its Parquet sources without a metadata size hint, so the
//! reader fetches a file's last 8 bytes to learn the metadata's length, then the
//! metadata, then the data: on an object store, three round trips one after another
//! for each file a run reads. DataFusion's own Parquet tables read the last
//! `datafusion.execution.parquet.metadata_size_hint` bytes (512 KiB by default) at
//! once instead, footer and metadata together, and a small file whole; then the data,
//! again. This physical optimizer rule gives delta-rs's scans that hint, and a reader
//! that fetches a file no larger than the hint whole, once, and serves its metadata and
//! data from that one read (but for the scans of files with deletion vectors, whose
//! node must keep the source it planned).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::datafusion::common::Result;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileMetrics, ParquetFileReaderFactory,
};
use deltalake::datafusion::datasource::physical_plan::{FileSource, ParquetSource};
use deltalake::datafusion::datasource::source::DataSourceExec;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{ObjectStore, ObjectStoreExt};

/// Sets the session's Parquet metadata size hint on every Parquet scan of a plan, and
/// has files no larger than it read whole ([`WholeSmallFiles`]).
#[derive(Debug)]
pub(crate) struct ParquetMetadataHint {
    /// Where the scans' object stores are registered (delta-rs registers a table's
    /// store when it plans the scan).
    runtime: Arc<RuntimeEnv>,
}

impl ParquetMetadataHint {
    pub(crate) fn new(runtime: Arc<RuntimeEnv>) -> Self {
        ParquetMetadataHint { runtime }
    }
}

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
            let mut source = parquet.clone().with_metadata_size_hint(hint);
            // Larger files are read by the source's own reader (delta-rs's caches
            // their metadata), else by DataFusion's.
            let whole = WholeSmallFiles {
                runtime: self.runtime.clone(),
                store_url: scan.object_store_url.clone(),
                max_size: hint as u64,
                larger: parquet.parquet_file_reader_factory().cloned(),
            };
            source = source.with_parquet_file_reader_factory(Arc::new(whole));
            let mut scan = scan.clone();
            scan.file_source = Arc::new(source);
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

/// Readers of a scan's Parquet files: a file of at most `max_size` bytes is read whole
/// by its first read ([`WholeFile`]); a larger one by `larger`, or as DataFusion reads
/// it.
#[derive(Debug)]
struct WholeSmallFiles {
    /// Where the scan's store is registered: by delta-rs, when the scan executes.
    runtime: Arc<RuntimeEnv>,
    store_url: ObjectStoreUrl,
    max_size: u64,
    larger: Option<Arc<dyn ParquetFileReaderFactory>>,
}

impl ParquetFileReaderFactory for WholeSmallFiles {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let store = self.runtime.object_store(&self.store_url)?;
        if file.object_meta.size > self.max_size {
            let larger = match &self.larger {
                Some(factory) => factory.clone(),
                None => Arc::new(DefaultParquetFileReaderFactory::new(store)),
            };
            return larger.create_reader(partition_index, file, metadata_size_hint, metrics);
        }
        let metrics =
            ParquetFileMetrics::new(partition_index, file.object_meta.location.as_ref(), metrics);
        Ok(Box::new(WholeFile {
            store,
            file,
            metrics,
            bytes: None,
        }))
    }
}

/// A Parquet file read whole by its first read (the metadata's, in a scan): its
/// metadata and data then come from memory. DataFusion's reader, given a hint at least
/// the file's size, also fetches the whole file for the metadata, and then its data
/// again.
struct WholeFile {
    store: Arc<dyn ObjectStore>,
    file: PartitionedFile,
    metrics: ParquetFileMetrics,
    bytes: Option<Bytes>,
}

impl WholeFile {
    async fn bytes(&mut self) -> std::result::Result<Bytes, ParquetError> {
        if let Some(bytes) = &self.bytes {
            return Ok(bytes.clone());
        }
        let location = &self.file.object_meta.location;
        let bytes = async { self.store.get(location).await?.bytes().await }
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        self.metrics.bytes_scanned.add(bytes.len());
        self.bytes = Some(bytes.clone());
        Ok(bytes)
    }

    fn slice(bytes: &Bytes, range: Range<u64>) -> std::result::Result<Bytes, ParquetError> {
        let (start, end) = (range.start as usize, range.end as usize);
        if start > end || end > bytes.len() {
            return Err(ParquetError::EOF(format!(
                "range {start}..{end} is not in a file of {} bytes",
                bytes.len()
            )));
        }
        Ok(bytes.slice(start..end))
    }
}

impl AsyncFileReader for WholeFile {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<Bytes, ParquetError>> {
        async move { Self::slice(&self.bytes().await?, range) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, std::result::Result<Vec<Bytes>, ParquetError>> {
        async move {
            let bytes = self.bytes().await?;
            ranges.into_iter().map(|r| Self::slice(&bytes, r)).collect()
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, std::result::Result<Arc<ParquetMetaData>, ParquetError>> {
        // The page index is in the bytes read already: load it unless told not to.
        let policy = options.map_or(PageIndexPolicy::Optional, |o| o.column_index_policy());
        async move {
            let bytes = self.bytes().await?;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(policy)
                .parse_and_finish(&bytes)?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch};

    use super::*;
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
                // The hint, then the reader factory (`None`, or the one set).
                let debug = format!("{parquet:?}");
                let (_, hint) = debug.rsplit_once("metadata_size_hint: ").unwrap();
                let hint = hint.split(',').next().unwrap();
                let (_, factory) = debug.split_once("parquet_file_reader_factory: ").unwrap();
                let factory = factory.split([',', ' ']).next().unwrap();
                sources.push(format!("{hint} {factory}"));
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
            !sources.is_empty() && sources.iter().all(|s| s.starts_with("None ")),
            "delta-rs's scan alone sets no hint: {sources:?}"
        );

        let run = crate::run::session_context(None, None);
        run.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let sources = parquet_hints(&run).await;
        assert!(
            !sources.is_empty()
                && sources
                    .iter()
                    .all(|s| s.starts_with(hint) && s.contains("WholeSmallFiles")),
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

    /// A small file's metadata and data come from one read: once its metadata is
    /// read, the reader needs the store no more.
    #[tokio::test]
    async fn a_small_file_is_read_whole_once() {
        use deltalake::parquet::arrow::ArrowWriter;
        use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
        use futures::TryStreamExt;
        use object_store::path::Path;
        use object_store::{ObjectStoreExt, memory::InMemory};

        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from_iter_values(0..10_000)) as ArrayRef,
        )])
        .unwrap();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let store = Arc::new(InMemory::new());
        let path = Path::from("part-0.parquet");
        store.put(&path, file.clone().into()).await.unwrap();
        let meta = store.head(&path).await.unwrap();

        let runtime = Arc::new(RuntimeEnv::default());
        let store_url = ObjectStoreUrl::parse("memory://whole").unwrap();
        runtime.register_object_store(store_url.as_ref(), store.clone());
        let factory = WholeSmallFiles {
            runtime,
            store_url,
            max_size: 512 * 1024,
            larger: None,
        };
        let metrics = ExecutionPlanMetricsSet::new();
        let reader: Box<dyn AsyncFileReader> = factory
            .create_reader(0, PartitionedFile::from(meta), None, &metrics)
            .unwrap();
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.unwrap();
        store.delete(&path).await.unwrap();
        let batches: Vec<RecordBatch> = builder.build().unwrap().try_collect().await.unwrap();
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            10_000
        );
        assert_eq!(
            batches[0].column(0).as_ref(),
            batch.column(0).slice(0, batches[0].num_rows()).as_ref()
        );
    }
}
