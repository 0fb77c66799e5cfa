//! Every WGSL file under shaders/ parses and validates with naga, without a device.

use std::path::Path;

#[test]
fn every_shader_validates_with_naga() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{} (no optional capabilities): {e:?}", path.display()));
        count += 1;
    }
    assert!(
        count >= 5,
        "expected one file per kernel family, found {count}"
    );
    // The shaders the library embeds are exactly these files.
    for s in linvt::gpu::kernel::ALL_SHADERS {
        assert!(
            dir.join(format!("{}.wgsl", s.name)).exists(),
            "{} is not under shaders/",
            s.name
        );
    }
}
