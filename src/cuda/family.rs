//! The torch family: every package whose build depends on the torch backend, so it must come
//! from the backend's PyTorch index wherever it is required from (a pak line, a dependency, a
//! custom node's requirements), with the reason for each entry.
//!
//! Owns: [`TORCH_FAMILY`] (the one list), [`FamilyMember`], [`family_member`] and
//! [`MemberKind`] (a per-backend build, or a CUDA runtime wheel that a CPU image never has).
//!
//! Must not: decide which index a stack defines or pins (that is `resolve::backend`), talk to
//! an index, or resolve.

/// Why a package belongs to the family, which decides what `cpu` does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// Built once per backend (`+cu130`, `+cpu`): taken from the backend's index.
    Build,
    /// A CUDA runtime library that CUDA builds of torch pin to an exact version: taken from
    /// the backend's index, and refused outright under `cpu` (a CPU image has no CUDA).
    CudaRuntime,
}

/// One entry of the family: a name, or a prefix ending in `*`, and why it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyMember {
    /// A normalized name, or a prefix ending in `*` (`nvidia-cublas*` covers
    /// `nvidia-cublas` and `nvidia-cublas-cu12`).
    pub pattern: &'static str,
    pub kind: MemberKind,
    /// Why it must follow the backend.
    pub reason: &'static str,
}

impl FamilyMember {
    /// Whether `name` (normalized) is this entry.
    pub fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.pattern == name,
        }
    }
}

const TORCH: &str = "the backend's build (+cu130, +cpu, ...) exists only on its PyTorch index; \
                     the public index carries one CUDA build for every backend";
const PER_BACKEND: &str = "compiled against one torch build and published per backend on the \
                           PyTorch indexes (an exact torch== requirement)";
const TRITON: &str = "torch's Linux CUDA builds pin an exact triton version, hosted beside them";
const RUNTIME: &str = "a CUDA runtime wheel that the backend's torch build pins to an exact \
                       version (torch's Requires-Dist, read off a torch 2.11.0+cu130 install); \
                       a CPU build needs none";

/// The torch family, in one place. nvidia-ml-py (NVML bindings) and cupy are not part of it:
/// they do not depend on the backend's torch build.
pub const TORCH_FAMILY: &[FamilyMember] = &[
    member("torch", MemberKind::Build, TORCH),
    member("torchvision", MemberKind::Build, PER_BACKEND),
    member("torchaudio", MemberKind::Build, PER_BACKEND),
    member("torchcodec", MemberKind::Build, PER_BACKEND),
    member("torchao", MemberKind::Build, PER_BACKEND),
    member("xformers", MemberKind::Build, PER_BACKEND),
    member("fbgemm-gpu", MemberKind::Build, PER_BACKEND),
    member("triton", MemberKind::Build, TRITON),
    member(
        "pytorch-triton",
        MemberKind::Build,
        "triton under the name the PyTorch indexes give their own builds of it",
    ),
    member("cuda-toolkit", MemberKind::CudaRuntime, RUNTIME),
    member("cuda-bindings", MemberKind::CudaRuntime, RUNTIME),
    member("cuda-pathfinder", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cublas*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cuda-cupti*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cuda-nvrtc*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cuda-runtime*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cudnn-*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cufft*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cufile*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-curand*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cusolver*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-cusparse*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-nccl-*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-nvjitlink*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-nvshmem-*", MemberKind::CudaRuntime, RUNTIME),
    member("nvidia-nvtx*", MemberKind::CudaRuntime, RUNTIME),
];

const fn member(pattern: &'static str, kind: MemberKind, reason: &'static str) -> FamilyMember {
    FamilyMember {
        pattern,
        kind,
        reason,
    }
}

/// The family entry of `name` (normalized), if it is in the family.
pub fn family_member(name: &str) -> Option<&'static FamilyMember> {
    TORCH_FAMILY.iter().find(|m| m.matches(name))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn members() {
        assert_eq!(
            family_member("torch").map(|m| m.kind),
            Some(MemberKind::Build)
        );
        assert_eq!(
            family_member("nvidia-cudnn-cu13").map(|m| m.kind),
            Some(MemberKind::CudaRuntime)
        );
        assert!(family_member("nvidia-cusparselt-cu13").is_some());
        assert!(family_member("nvidia-ml-py").is_none());
        assert!(family_member("cupy-cuda12x").is_none());
        assert!(family_member("torch-geometric").is_none());
    }
}
