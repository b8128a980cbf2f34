//! plugin-api's README shows this plugin as the example: check that it has not drifted.

#[test]
fn the_sdk_readme_shows_this_plugin_as_it_is() {
    let readme = include_str!("../../../../plugin-api/README.md");
    let lib = include_str!("../src/lib.rs");
    let tests = include_str!("fake_host.rs");
    assert!(
        readme.contains(&format!("```rust\n{lib}```")),
        "plugin-api/README.md no longer shows tests/plugins/example/src/lib.rs whole and unchanged: paste it in again"
    );
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3);
    for code in blocks {
        assert!(
            lib.contains(code) || tests.contains(code),
            "this README block is not in the example plugin or its tests any more:\n{code}"
        );
    }
}
