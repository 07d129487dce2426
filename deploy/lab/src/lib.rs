//! The lab topology in network namespaces: a fabric router, a kernel-VXLAN client and the pair.
