//! Build script shared by every guest binary (each guest's Cargo.toml says
//! `build = "../rt/guest-build.rs"`): links the binary with rt/linker.ld — the image at
//! 1 MiB guest-physical, entered through the PVH note — as a non-PIE executable.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../rt/linker.ld");
    let script = script.canonicalize().expect("rt/linker.ld exists next to the guest crates");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
    println!("cargo:rerun-if-changed={}", script.display());
}
