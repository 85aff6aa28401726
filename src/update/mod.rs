//! Container updates: the pure planner (`plan`), the executor that alone
//! calls the engine (`exec`), and the updater task that drives them from
//! the target, the lock table and the engine's state.

pub mod plan;
pub mod runner;
pub mod shutdown;
pub mod status;
pub mod store;
