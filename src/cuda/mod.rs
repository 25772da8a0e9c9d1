//! CUDA awareness: torch backends, ABI-coupled performance wheels, and the runtime host.
//!
//! Owns: [`arch`] (GPU architectures: `target.gpus`, each backend's list, wheels' claims),
//! [`family`] (the torch family the backend routes, with reasons), [`backend`] (the `cu130` / `cu128` / `cu126` / `cpu` backends, their CUDA version,
//! driver and GPU requirements), [`abi_label`] (local labels such as
//! `+cu12torch2.8cxx11abiTRUE`, declared couplings, the fit check), [`select`] (wording why no
//! build of a coupled package fits, from the resolver's classification), [`doctor`]
//! (reading the host's driver and GPUs and judging each backend) and [`dl`] (dlopen of NVML
//! and libcuda; no link-time CUDA dependency).
//!
//! Must not: resolve or talk to indexes. The resolver (`crate::resolve`) calls
//! [`abi_label::check`] and [`select::explain_no_build`]; the stack manifest wiring of
//! `[couplings]` calls [`abi_label::parse_couplings`].

pub mod abi_label;
pub mod arch;
pub mod backend;
pub mod dl;
pub mod doctor;
pub mod family;
pub mod select;

pub use abi_label::{
    check, check_cuda, parse_couplings, torch_build_cxx11_abi, torch_uses_cxx11_abi, AbiLabel,
    Coupling, CouplingError, Mismatch, MismatchPart, TorchSeries,
};
pub use arch::{
    parse_gpus, torch_archs, wheel_arch_claim, ArchList, Coverage, GpuArch, GpuArchError,
};
pub use backend::{
    Backend, BackendChoice, BackendParseError, ComputeCapability, CudaVersion, DriverRequirement,
    DriverVersion, Verdict,
};
pub use doctor::{assess, read_host, DoctorReport, HostReading, HostSources, LockCheck};
pub use family::{family_member, FamilyMember, MemberKind, TORCH_FAMILY};
pub use select::{
    display_filename, explain_no_build, AbiContext, CouplingSource, NoBuild, RejectedBuild,
};
