//! The model every room of infer-doctor shares: what one request looked like, how latencies are summarised,
//! and what a run concluded. No I/O and no async runtime here, so everything is testable as plain values.

pub mod aggregate;
pub mod comparison;
pub mod config;
pub mod evidence;
pub mod figures;
pub mod finding;
pub mod gpu;
pub mod host;
pub mod probes;
pub mod record;
pub mod resample;
pub mod secret;
pub mod serde_float;
pub mod shard;
pub mod signals;
pub mod slo;
pub mod stats;
pub mod summary;
pub mod timeline;
pub mod trace;
pub mod units;
pub mod workload;

pub use aggregate::RunAggregate;
pub use config::{ConfigConflict, ConfigSource, ServerConfig, Setting};
pub use evidence::{
    Evidence, HardwareFacts, LogFacts, LogFailure, LogFailureKind, LogStats, NetworkFacts,
    PathTiming, ReplicaHealth, UNLABELLED_PODS, WorkloadFacts,
};
pub use finding::{
    CheckLine, CheckStatus, Confidence, Diagnosis, Finding, Observation, Severity, Symptom,
};
pub use gpu::{
    ClockReason, DcgmDiag, DiagOutcome, DiagTest, EnvFacts, GpuLink, GpuNvLinkErrors, GpuNvLinks,
    GpuState, GpuTopology, HungTask, KernelFacts, NvLinkErrorCounters, NvLinkLane, OomKill,
    PciePath, TopologyGpu, XidEvent,
};
pub use host::{
    Cgroup, HostFacts, NumaNode, PciDevice, PodContainer, PodFacts, Pressure, PressureLine,
    ServerMemory, ServerThreads, Termination, ThreadCpu,
};
pub use probes::{
    DeterminismFacts, DeterminismRun, Divergence, TemplateAnswer, TemplateFacts, TokenPick,
};
pub use record::{ErrorClass, Phase, RequestError, RequestRecord};
pub use signals::{Across, Buckets, Reading, ServerReadings, Signal, SignalKind};
pub use slo::{Slo, SloMetric, SloSet};
pub use stats::{LatencyHistogram, Summary};
pub use summary::RunSummary;
pub use trace::{KernelTrace, MAX_DRAWN_STEPS, PhaseTrace, RankTrace, StepTrace, TraceFacts};
pub use workload::{PromptItem, PromptSource, TokenCounter};
