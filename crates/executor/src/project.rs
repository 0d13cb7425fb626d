//! Projects: several pipelines that may feed each other, run in dependency order.
//!
//! ```text
//!  devices ──[devices_daily]──► devices_daily ──[type_daily]──► type_daily
//! ```
//!
//! A pipeline whose source is another's target depends on it and runs after it. When
//! the upstream pipeline rewrites a past partition of its target (late data), the
//! downstream one sees a late change of its own source and reprocesses it too.
//!
//! A project file holds a `[[pipeline]]` list, each entry the keys of a pipeline file:
//!
//! ```toml
//! [[pipeline]]
//! name = "devices_daily"
//! source = { table = "devices", partition_column = "event_time" }
//! target = { table = "devices_daily" }
//! state = { table = "latefill_state" }
//! transform = { sql = "SELECT type, version, count(*) AS devices, event_time FROM source GROUP BY type, version, event_time" }
//!
//! [[pipeline]]
//! name = "type_daily"
//! source = { table = "devices_daily", partition_column = "event_time" }
//! target = { table = "type_daily" }
//! state = { table = "latefill_state" }
//! transform = { sql = "SELECT type, sum(devices) AS devices, event_time FROM source GROUP BY type, event_time" }
//! ```
//!
//! A directory of pipeline files is a project too, and so is a single pipeline file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;

/// Pipelines in dependency order: each comes after every pipeline whose target is
/// its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pipelines: Vec<Pipeline>,
}

impl Project {
    /// A project of `pipelines`, put in dependency order (declaration order where
    /// none depends on another). Fails on a name or target declared twice, and on a
    /// cycle, which it names.
    pub fn new(pipelines: Vec<Pipeline>) -> Result<Self> {
        let invalid = |message: String| Error::ConfigInvalid {
            path: PathBuf::from("<project>"),
            message,
        };
        if pipelines.is_empty() {
            return Err(invalid("the project declares no pipeline".into()));
        }
        let mut names = BTreeMap::new();
        let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &pipelines {
            if names.insert(p.name.as_str(), ()).is_some() {
                return Err(invalid(format!(
                    "two pipelines are named {:?}; names must differ",
                    p.name
                )));
            }
            if let Some(other) = targets.insert(key(&p.target), &p.name) {
                return Err(invalid(format!(
                    "pipelines {other:?} and {:?} both write {}; each target belongs to one pipeline",
                    p.name, p.target
                )));
            }
        }
        // A state table holds state only: never any pipeline's source or target.
        for p in &pipelines {
            for q in &pipelines {
                for (role, url) in [("source", &q.source), ("target", &q.target)] {
                    if key(&p.state) == key(url) {
                        return Err(invalid(format!(
                            "the state table of pipeline {:?} ({}) is the {role} table of \
                             pipeline {:?}; a state table must be a table of its own",
                            p.name, p.state, q.name
                        )));
                    }
                }
            }
        }
        // upstream[i]: the pipeline whose target is pipeline i's source, if any.
        let upstream: Vec<Option<usize>> = pipelines
            .iter()
            .map(|p| {
                pipelines
                    .iter()
                    .position(|q| key(&q.target) == key(&p.source))
            })
            .collect();
        // Each pipeline has at most one upstream: the order is a forest of chains,
        // and a cycle is a walk up that comes back.
        for start in 0..pipelines.len() {
            let mut walk = vec![start];
            let mut at = start;
            while let Some(up) = upstream[at] {
                if up == start {
                    // Downstream from `start` and back to it.
                    let mut names: Vec<&str> = vec![&pipelines[start].name];
                    names.extend(walk[1..].iter().rev().map(|&i| pipelines[i].name.as_str()));
                    names.push(&pipelines[start].name);
                    return Err(invalid(format!(
                        "the pipelines form a cycle: {} (each reads the table the one before it writes)",
                        names.join(" -> ")
                    )));
                }
                if walk.contains(&up) {
                    break;
                }
                walk.push(up);
                at = up;
            }
        }
        // Depth first, in declaration order: a pipeline after its upstream.
        let mut order = Vec::with_capacity(pipelines.len());
        let mut placed = vec![false; pipelines.len()];
        for start in 0..pipelines.len() {
            let mut chain = vec![start];
            let mut at = start;
            while let Some(up) = upstream[at] {
                chain.push(up);
                at = up;
            }
            for &i in chain.iter().rev() {
                if !placed[i] {
                    placed[i] = true;
                    order.push(i);
                }
            }
        }
        let mut slots: Vec<Option<Pipeline>> = pipelines.into_iter().map(Some).collect();
        Ok(Project {
            pipelines: order
                .into_iter()
                .map(|i| slots[i].take().expect("each placed once"))
                .collect(),
        })
    }

    /// Reads a project: a file with a `[[pipeline]]` list, a single pipeline file (a
    /// project of one), or a directory whose `*.toml` files are pipeline files.
    /// Relative table paths are resolved against the directory of the file that
    /// declares them.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| Error::ConfigRead {
                path: path.to_owned(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::ConfigInvalid {
                    path: path.to_owned(),
                    message: "the directory holds no pipeline file (*.toml)".into(),
                });
            }
            let pipelines = files
                .iter()
                .map(Pipeline::from_file)
                .collect::<Result<Vec<_>>>()?;
            return Self::new(pipelines).map_err(|e| at_path(e, path));
        }
        let (text, dir) = crate::pipeline::read_config(path)?;
        Self::from_toml(&text, &dir).map_err(|e| at_path(e, path))
    }

    /// Parses a project (or a single pipeline) from TOML text; relative table paths
    /// are resolved against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self> {
        let invalid = |message: String| Error::ConfigInvalid {
            path: PathBuf::from("<text>"),
            message,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let Some(list) = table.remove("pipeline") else {
            return Self::new(vec![Pipeline::from_toml(text, base_dir)?]);
        };
        if let Some(other) = table.keys().next() {
            return Err(invalid(format!(
                "unknown key {other:?} beside the [[pipeline]] list; a project file holds \
                 [[pipeline]] tables only"
            )));
        }
        let toml::Value::Array(list) = list else {
            return Err(invalid(
                "`pipeline` must be a list of tables: write each as [[pipeline]]".into(),
            ));
        };
        let pipelines = list
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let name = value
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map_or(String::new(), |n| format!(" ({n})"));
                Pipeline::from_toml_value(value, base_dir).map_err(|e| match e {
                    Error::ConfigInvalid { path, message } => Error::ConfigInvalid {
                        path,
                        message: format!("pipeline {}{name}: {message}", i + 1),
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(pipelines)
    }

    /// The pipelines, in dependency order.
    pub fn pipelines(&self) -> &[Pipeline] {
        &self.pipelines
    }

    /// The pipeline called `name`.
    pub fn get(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// The pipeline whose target is `pipeline`'s source, if the project has one.
    pub fn upstream_of(&self, pipeline: &Pipeline) -> Option<&Pipeline> {
        self.pipelines
            .iter()
            .find(|p| key(&p.target) == key(&pipeline.source))
    }

    /// The names of the pipelines, in dependency order.
    pub fn names(&self) -> Vec<&str> {
        self.pipelines.iter().map(|p| p.name.as_str()).collect()
    }
}

/// A table's identity for matching a source to a target: its URL without a trailing
/// slash.
fn key(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// Whether `a` and `b` name the same table (one may end in a slash).
pub fn same_table(a: &Url, b: &Url) -> bool {
    key(a) == key(b)
}

fn at_path(e: Error, path: &Path) -> Error {
    match e {
        Error::ConfigInvalid { message, .. } => Error::ConfigInvalid {
            path: path.to_owned(),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, source: &str, target: &str) -> String {
        format!(
            "[[pipeline]]\nname = \"{name}\"\n\
             source = {{ table = \"{source}\", partition_column = \"event_time\" }}\n\
             target = {{ table = \"{target}\" }}\n\
             state = {{ table = \"state\" }}\n\
             transform = {{ sql = \"SELECT * FROM source\" }}\n"
        )
    }

    #[test]
    fn pipelines_run_after_the_pipeline_whose_target_they_read() {
        // Declared downstream first.
        let text = [
            pipeline("weekly", "type_daily", "weekly"),
            pipeline("type_daily", "devices_daily", "type_daily"),
            pipeline("other", "elsewhere", "other_out"),
            pipeline("devices_daily", "devices", "devices_daily"),
        ]
        .concat();
        let project = Project::from_toml(&text, Path::new("/p")).unwrap();
        let names = project.names();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("devices_daily") < at("type_daily"), "{names:?}");
        assert!(at("type_daily") < at("weekly"), "{names:?}");
        assert_eq!(names.len(), 4);
        let weekly = project.get("weekly").unwrap();
        assert_eq!(project.upstream_of(weekly).unwrap().name, "type_daily");
    }

    #[test]
    fn a_cycle_is_an_error_that_names_it() {
        let text = [
            pipeline("a", "t_c", "t_a"),
            pipeline("b", "t_a", "t_b"),
            pipeline("c", "t_b", "t_c"),
        ]
        .concat();
        let err = Project::from_toml(&text, Path::new("/p")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cycle"), "{text}");
        assert!(text.contains("a -> b -> c -> a"), "{text}");
    }

    #[test]
    fn names_and_targets_are_declared_once() {
        let twice = [pipeline("a", "s", "t1"), pipeline("a", "s", "t2")].concat();
        let err = Project::from_toml(&twice, Path::new("/p")).unwrap_err();
        assert!(
            err.to_string().contains("two pipelines are named \"a\""),
            "{err}"
        );
        let shared = [pipeline("a", "s", "t"), pipeline("b", "s", "t")].concat();
        let err = Project::from_toml(&shared, Path::new("/p")).unwrap_err();
        assert!(err.to_string().contains("both write"), "{err}");
    }

    #[test]
    fn a_bad_entry_is_named_by_its_place_and_name() {
        let text = [
            pipeline("a", "s", "t"),
            pipeline("b", "t", "u").replace("partition_column", "partition_col"),
        ]
        .concat();
        let err = Project::from_toml(&text, Path::new("/p")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pipeline 2 (b)") && text.contains("partition_col"),
            "{text}"
        );
    }

    #[test]
    fn a_single_pipeline_file_is_a_project_of_one() {
        let project = Project::from_toml(crate::DEFAULT_PIPELINE_TOML, Path::new("/p")).unwrap();
        assert_eq!(project.names(), ["devices_daily"]);
    }
}
