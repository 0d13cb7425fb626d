//! What a pipeline computes from one partition of its source: SQL, as pipeline files
//! declare it, or, for programs embedding latefill, a Rust function over a DataFusion
//! [`DataFrame`].
//!
//! Either way the partition's rows are the input (the table `source` for SQL), the
//! result must carry the partition column(s), and it replaces that partition of the
//! target. Each processed partition records the transform's version; a partition
//! processed by another version is stale (`status`, `backfill --stale`).

use std::sync::Arc;

use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::error::Result as DataFusionResult;

/// A transform written in Rust: a function from the partition's rows to the rows to
/// write, with a version its author declares.
///
/// ```
/// use latefill_executor::DataFrameTransform;
/// use deltalake::datafusion::dataframe::DataFrame;
/// use deltalake::datafusion::error::Result;
/// use deltalake::datafusion::functions_aggregate::expr_fn::count;
/// use deltalake::datafusion::prelude::{col, lit};
///
/// /// Devices per type and OS version, a day at a time.
/// struct DevicesPerVersion;
///
/// impl DataFrameTransform for DevicesPerVersion {
///     fn version(&self) -> String {
///         "devices-per-version/1".into()
///     }
///
///     fn apply(&self, source: DataFrame) -> Result<DataFrame> {
///         source.aggregate(
///             vec![col("type"), col("version"), col("event_time")],
///             vec![count(lit(1)).alias("devices")],
///         )
///     }
/// }
/// ```
pub trait DataFrameTransform: Send + Sync + 'static {
    /// The transform's version, as its author declares it: change it whenever the
    /// output would change, so that the partitions processed before become stale.
    /// The recorded version is `rust:` followed by it.
    fn version(&self) -> String;

    /// The rows to write for one partition, from its rows in the source. Build the
    /// plan only: latefill executes it while writing.
    fn apply(&self, source: DataFrame) -> DataFusionResult<DataFrame>;
}

/// A [`DataFrameTransform`] made of a version and a closure, by [`Transform::from_fn`].
struct FnTransform<F> {
    version: String,
    f: F,
}

impl<F> DataFrameTransform for FnTransform<F>
where
    F: Fn(DataFrame) -> DataFusionResult<DataFrame> + Send + Sync + 'static,
{
    fn version(&self) -> String {
        self.version.clone()
    }

    fn apply(&self, source: DataFrame) -> DataFusionResult<DataFrame> {
        (self.f)(source)
    }
}

/// What a pipeline computes from a partition.
#[derive(Clone)]
pub enum Transform {
    /// SQL over the table `source` (what a pipeline file's `transform.sql` holds).
    Sql(String),
    /// A Rust function over the partition as a [`DataFrame`].
    DataFrame(Arc<dyn DataFrameTransform>),
}

impl Transform {
    /// A transform given as a closure, with its declared version (see
    /// [`DataFrameTransform::version`]).
    ///
    /// ```
    /// use latefill_executor::Transform;
    /// use deltalake::datafusion::prelude::{col, lit};
    ///
    /// // Only the iPhones, row by row.
    /// let iphones = Transform::from_fn("iphones/1", |source| {
    ///     source.filter(col("type").eq(lit("iphone")))
    /// });
    /// assert_eq!(iphones.version(), "rust:iphones/1");
    /// ```
    pub fn from_fn<F>(version: impl Into<String>, f: F) -> Self
    where
        F: Fn(DataFrame) -> DataFusionResult<DataFrame> + Send + Sync + 'static,
    {
        Transform::DataFrame(Arc::new(FnTransform {
            version: version.into(),
            f,
        }))
    }

    /// The version each processed partition records: `sql:` and a hash of the SQL as
    /// DataFusion's parser reads it back (layout, comments and keyword case are no
    /// change; anything the SQL says differently is), or `rust:` and the declared
    /// version.
    pub fn version(&self) -> String {
        match self {
            Transform::Sql(sql) => sql_version(sql),
            Transform::DataFrame(t) => format!("rust:{}", t.version()),
        }
    }

    /// The SQL, for a SQL transform.
    pub fn as_sql(&self) -> Option<&str> {
        match self {
            Transform::Sql(sql) => Some(sql),
            Transform::DataFrame(_) => None,
        }
    }
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transform::Sql(sql) => f.debug_tuple("Sql").field(sql).finish(),
            Transform::DataFrame(t) => f.debug_tuple("DataFrame").field(&t.version()).finish(),
        }
    }
}

/// Two transforms are the same when they record the same version.
impl PartialEq for Transform {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Transform::Sql(a), Transform::Sql(b)) => a == b,
            _ => self.version() == other.version(),
        }
    }
}

impl Eq for Transform {}

fn sql_version(sql: &str) -> String {
    use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;
    let normalised = match Parser::parse_sql(&GenericDialect {}, sql) {
        Ok(statements) => statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
        // Invalid SQL fails its runs anyway; its words still identify it.
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    format!("sql:{:016x}", crate::fingerprint::fnv1a(normalised.bytes()))
}
