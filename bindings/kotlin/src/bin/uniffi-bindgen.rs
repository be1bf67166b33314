//! uniffi's binding generator, built from the same uniffi version as the library so
//! the generated Kotlin matches its scaffolding.

fn main() {
    uniffi::uniffi_bindgen_main()
}
