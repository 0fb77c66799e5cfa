//! Every shader the library embeds parses and validates with naga, without a device, and every
//! WGSL file under shaders/ is embedded.

use std::path::Path;

#[test]
fn every_shader_validates_with_naga() {
    for s in linvt::gpu::ALL_SHADERS {
        let source = s.source();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", s.name, e.emit_to_string(&source)));
        // Only variants that declare `enable f16;` may use f16 (they run only on adapters with
        // SHADER_F16); everything else must validate with no optional capability (browsers).
        let caps = if source.contains("enable f16;") {
            naga::valid::Capabilities::SHADER_FLOAT16
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} (capabilities {caps:?}): {e:?}", s.name));
    }
}

#[test]
fn every_wgsl_file_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        // A shader's source is one or more files (a kernel family, after preludes such as the
        // texel layout or how operand A is read) and short type aliases.
        assert!(
            linvt::gpu::ALL_SHADERS
                .iter()
                .any(|s| s.parts.contains(&src.as_str())),
            "{} is not embedded by any shader in ALL_SHADERS",
            path.display()
        );
        count += 1;
    }
    assert!(
        count >= 5,
        "expected one file per kernel family, found {count}"
    );
}
