//! Builds the XDP programs and points `OVL_XDP_OBJ` at the object, which `xdp.rs` embeds.
use std::{env, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let layout = ebpf_build::Layout::new(&ebpf_build::root_from_manifest_dir(&manifest_dir));
    for input in layout.inputs() {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    match ebpf_build::build(&layout) {
        Ok(object) => println!("cargo:rustc-env=OVL_XDP_OBJ={}", object.display()),
        Err(e) => {
            // A build script's error output is shown whole; keep the first line the summary.
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
