//! The target state: which apps, releases and services should run. Parsed
//! strictly (`parse`); a service's config hash (`AppTarget::config_hash`)
//! tells whether a running container still matches its target; the target
//! in force is kept by `store`.

pub mod owners;
mod parse;
mod spec;
pub mod store;
mod strict;
mod validate;

pub use parse::{app_from_value, check, parse, parse_app, TargetError};
pub use spec::units::{Bytes, GoDuration, NanoCpus};
pub use spec::{
    scoped_name, AppTarget, Condition, Dependency, Healthcheck, Injected, Ipam, IpamPool, Logging,
    NetworkSpec, RestartPolicy, ServiceNetwork, ServiceSpec, Strategy, Target, Ulimit, VolumeSpec,
    DEFAULT_API_PORT, DEFAULT_NETWORK, SUPERVISOR_API_LABEL,
};
pub(crate) use strict::check as check_strict_json;
pub(crate) use strict::{escape as escape_key, no_controls};
pub(crate) use validate::{parse_expose, parse_port};
