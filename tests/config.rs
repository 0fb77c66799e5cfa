//! Config precedence (flags > --config > weights metadata > preset defaults) and presets.

use std::collections::HashMap;

use linvt::config::{
    GatherFrom, LinvtConfig, MultiScale, Preset, QuerySelfAttention, SelectionOrder, SvrOrder,
};
use linvt::ConfigPatch;

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn presets_differ_as_designed() {
    let o = LinvtConfig::preset(Preset::Official, 896);
    assert_eq!((o.num_heads, o.num_layers, o.top_k), (4, 8, 1024));
    assert_eq!(o.svr_order, SvrOrder::FramesThenTokens);
    assert_eq!(o.gather_from, GatherFrom::Refined);
    assert_eq!(o.selection_order, SelectionOrder::Score);
    assert_eq!(o.multi_scale, MultiScale::MultiB);
    assert_eq!(o.query_self_attention, QuerySelfAttention::PerQuery);
    let p = LinvtConfig::preset(Preset::Paper, 896);
    assert_eq!((p.num_heads, p.num_layers, p.top_k), (8, 4, 2048));
    assert_eq!(p.queries_per_scale, Some(vec![64, 32, 16]));
    assert_eq!(p.multi_scale, MultiScale::MultiC);
    assert_eq!(p.gather_from, GatherFrom::Input);
}

#[test]
fn plain_metadata_keys_are_read() {
    let m = meta(&[
        ("embed_size", "64"),
        ("num_heads", "4"),
        ("num_layers", "2"),
        ("top_k", "32"),
        ("use_multi_scale", "true"),
    ]);
    let c = ConfigPatch::from_metadata(&m, "w")
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(c.preset, Preset::Official, "no preset named → official");
    assert_eq!(
        (c.embed_size, c.num_heads, c.num_layers, c.top_k),
        (64, 4, 2, 32)
    );
    let m = meta(&[("embed_size", "64"), ("use_multi_scale", "false")]);
    let c = ConfigPatch::from_metadata(&m, "w")
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(
        (c.multi_scale, c.pool_scales.clone()),
        (MultiScale::SingleA, vec![1])
    );
    let bad = meta(&[("top_k", "lots")]);
    assert!(ConfigPatch::from_metadata(&bad, "w")
        .unwrap_err()
        .to_string()
        .contains("`top_k` = `lots`"));
}

#[test]
fn linvt_config_json_in_metadata_wins_over_plain_keys() {
    let m = meta(&[
        (
            "linvt_config",
            r#"{"preset":"paper","embed_size":32,"num_heads":2,"queries_per_scale":[4,2,1]}"#,
        ),
        ("num_heads", "8"),
    ]);
    let c = ConfigPatch::from_metadata(&m, "w")
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!((c.preset, c.num_heads, c.num_layers), (Preset::Paper, 2, 4));
    assert_eq!(c.query_split(7).unwrap(), vec![4, 2, 1]);
    assert!(c
        .query_split(8)
        .unwrap_err()
        .to_string()
        .contains("sums to 7"));
}

#[test]
fn flags_over_config_file_over_metadata() {
    let metadata = ConfigPatch::from_metadata(
        &meta(&[
            ("embed_size", "64"),
            ("num_heads", "4"),
            ("top_k", "32"),
            ("num_layers", "2"),
        ]),
        "w",
    )
    .unwrap();
    let file = ConfigPatch::from_json(r#"{"top_k": 16, "num_heads": 8}"#, "cfg.json").unwrap();
    let flags = ConfigPatch {
        top_k: Some(12),
        ..Default::default()
    };
    let c = flags.over(&file).over(&metadata).resolve().unwrap();
    assert_eq!(
        (c.top_k, c.num_heads, c.num_layers, c.embed_size),
        (12, 8, 2, 64)
    );
}

#[test]
fn ablation_variants_are_config() {
    let c = ConfigPatch::from_json(
        r#"{"embed_size": 64, "multi_scale": "multi-a", "svr_order": "tokens-then-frames"}"#,
        "x",
    )
    .unwrap()
    .resolve()
    .unwrap();
    assert_eq!(
        (c.multi_scale, c.svr_order),
        (MultiScale::MultiA, SvrOrder::TokensThenFrames)
    );
    assert!(ConfigPatch::from_json(r#"{"multi_scale": "multi-z"}"#, "x").is_err());
}
