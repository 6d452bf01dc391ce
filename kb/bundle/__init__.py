"""Signed USB bundles: how knowledge-base sources, vectors and models reach an air-gapped PC.

A bundle is a folder::

    manifest.json        what the bundle holds (see `kb.bundle.manifest`)
    manifest.sig         Ed25519 signature over the exact bytes of manifest.json
    kb-source/<name>/    KB source folders in any layout, each with its kb.toml if it has one
    mappings/<n>.toml    mapping files given separately from their source folder
    embeddings/ids.txt   precomputed vectors: one chunk id per line ...
    embeddings/vectors.f32   ... and their float32 rows (little endian), same order
    models/<file>.gguf   base models and LoRA adapters, described in the manifest's `models`

Engineer side: `sign.keygen`, `pack.build_bundle`. Appliance side: `importer.import_bundle`
copies the folder into internal staging, verifies signature and hashes on that copy only,
refuses replays, downgrades and hostile files, builds and self-tests the new KB version and
switches to it atomically. This package never imports `appliance`: paths come in as arguments.
"""
