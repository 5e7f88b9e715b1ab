//! The widget's files on the wire: compressed as `Accept-Encoding` allows (brotli, gzip, identity)
//! with `Vary`, an ETag per encoding and 304 on revalidation, content-hashed names cached for good,
//! the plain names still served for pages of an older release, and 404 for a hash this build lacks.

mod common;

use std::io::Read;

use common::*;

const BROWSER: &str = "gzip, deflate, br, zstd";

/// The body as the client reads it, after undoing `Content-Encoding`.
fn decoded(res: &HttpResponse) -> Vec<u8> {
    let mut out = Vec::new();
    match res.header("content-encoding") {
        None => out.extend_from_slice(&res.raw),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&res.raw[..]).read_to_end(&mut out).expect("a gzip body");
        }
        Some("br") => {
            brotli::Decompressor::new(&res.raw[..], 4096).read_to_end(&mut out).expect("a brotli body");
        }
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

async fn get(engine: &Engine, path: &str, accept: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    let res = engine.http("GET", path, &headers, None).await;
    assert_eq!(res.status, 200, "GET {path} ({accept:?}): {res:?}");
    res
}

/// The `/assets/` URLs a page links to (stylesheet, entry module, preloads).
fn linked_assets(page: &str) -> Vec<String> {
    page.split("=\"/assets/").skip(1).filter_map(|rest| rest.split_once('"')).map(|(name, _)| format!("/assets/{name}")).collect()
}

#[tokio::test]
async fn every_file_is_sent_in_the_best_encoding_the_client_accepts() {
    let engine = Engine::start(&[]);
    let page = get(&engine, "/room/post-1", None).await;
    let admin = get(&engine, "/admin", None).await;
    let mut paths = vec!["/room/post-1".to_string(), "/admin".to_string(), "/embed.js".to_string(), "/assets/widget.js".to_string()];
    paths.extend(linked_assets(&page.body));
    paths.extend(linked_assets(&admin.body));
    assert!(paths.len() > 10, "{paths:?}");

    for path in &paths {
        let plain = get(&engine, path, None).await;
        assert_eq!(plain.header("content-encoding"), None, "{path} without Accept-Encoding");
        let identity = plain.raw.to_vec();
        assert!(!identity.is_empty(), "{path}");
        let mut sizes = Vec::new();
        for (accept, expected) in [
            (BROWSER, Some("br")),
            ("gzip, deflate", Some("gzip")),
            ("br;q=0, gzip", Some("gzip")),
            ("*;q=0, gzip;q=0.5", Some("gzip")),
            ("br;q=0, gzip;q=0", None),
            ("identity", None),
            ("deflate", None),
        ] {
            let res = get(&engine, path, Some(accept)).await;
            assert_eq!(res.header("content-encoding"), expected, "{path} with Accept-Encoding: {accept}");
            assert_eq!(res.header("vary"), Some("Accept-Encoding"), "{path} with Accept-Encoding: {accept}");
            assert_eq!(res.header("content-type"), plain.header("content-type"), "{path}");
            assert_eq!(res.header("content-length"), Some(res.raw.len().to_string().as_str()), "{path}");
            assert_eq!(decoded(&res), identity, "{path} with Accept-Encoding: {accept}: the same file once decoded");
            sizes.push(res.raw.len());
        }
        let (br, gzip) = (sizes[0], sizes[1]);
        assert!(br < gzip && gzip < identity.len() / 2, "{path}: brotli {br} B, gzip {gzip} B, identity {} B", identity.len());
    }
}

#[tokio::test]
async fn each_encoding_has_its_own_etag_and_revalidates_with_304() {
    let engine = Engine::start(&[]);
    let page = get(&engine, "/room/post-1", None).await;
    let hashed = linked_assets(&page.body).into_iter().find(|p| p.starts_with("/assets/widget.")).expect("the page links the widget");
    for path in ["/room/post-1", "/embed.js", "/assets/client.js", hashed.as_str()] {
        let mut etags = Vec::new();
        for accept in [BROWSER, "gzip", "identity"] {
            let res = get(&engine, path, Some(accept)).await;
            let etag = res.header("etag").unwrap_or_else(|| panic!("{path}: no ETag")).to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{path}: a strong ETag, {etag}");
            etags.push(etag.clone());

            let again = engine.http("GET", path, &[("Accept-Encoding", accept), ("If-None-Match", &etag)], None).await;
            assert_eq!(again.status, 304, "{path} ({accept}) revalidated with its ETag: {again:?}");
            assert!(again.raw.is_empty(), "{path}: a 304 has no body");
            assert_eq!(again.header("etag"), Some(etag.as_str()), "{path}");
            assert_eq!(again.header("vary"), Some("Accept-Encoding"), "{path}");
            assert!(again.header("cache-control").is_some(), "{path}");
            let weak = format!("W/{etag}");
            let listed = format!("\"nope\", {weak}");
            let again = engine.http("GET", path, &[("Accept-Encoding", accept), ("If-None-Match", &listed)], None).await;
            assert_eq!(again.status, 304, "{path}: If-None-Match compares weakly and takes a list");
        }
        etags.sort();
        etags.dedup();
        assert_eq!(etags.len(), 3, "{path}: one ETag per encoding");

        // A brotli ETag from earlier does not stand for the gzip body the request would get now.
        let br_etag = get(&engine, path, Some(BROWSER)).await.header("etag").unwrap().to_string();
        let other = engine.http("GET", path, &[("Accept-Encoding", "gzip"), ("If-None-Match", &br_etag)], None).await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.header("content-encoding"), Some("gzip"), "{path}");
    }
}

#[tokio::test]
async fn hashed_names_are_immutable_plain_names_short_lived_and_unknown_hashes_404() {
    let engine = Engine::start(&[]);
    let page = get(&engine, "/room/post-1", Some(BROWSER)).await;
    assert_eq!(page.header("cache-control"), Some("no-cache"), "the page revalidates on every load");
    let page = String::from_utf8(decoded(&page)).unwrap();
    let embed = get(&engine, "/embed.js", Some(BROWSER)).await;
    assert_eq!(embed.header("cache-control"), Some("public, max-age=300"), "embed.js keeps its URL: a short cache");

    let linked = linked_assets(&page);
    for name in ["widget", "client", "storage", "strings"] {
        let module = linked
            .iter()
            .find(|p| p.starts_with(&format!("/assets/{name}.")) && p.ends_with(".js"))
            .unwrap_or_else(|| panic!("{name} in {linked:?}"));
        let hash = module.trim_start_matches(&format!("/assets/{name}.")).trim_end_matches(".js");
        assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{module}: a content hash");
    }
    assert!(linked.iter().any(|p| p.starts_with("/assets/widget.") && p.ends_with(".css")), "{linked:?}");
    let mut lazy = Vec::new();
    for path in &linked {
        let res = get(&engine, path, Some(BROWSER)).await;
        assert_eq!(res.header("cache-control"), Some("public, max-age=31536000, immutable"), "{path}");
        let body = String::from_utf8(decoded(&res)).unwrap();
        // Imports name hashed files too, so no module ever reaches a file by a name that changes meaning.
        for import in body.split("from \"./").skip(1) {
            let target = format!("/assets/{}", import.split_once('"').unwrap().0);
            assert!(linked.contains(&target), "{path} imports {target}, which the page does not preload");
        }
        // Modules fetched later (`import("./x.js")`) are hashed and kept a year as well.
        for import in body.split("import(\"./").skip(1) {
            let target = format!("/assets/{}", import.split_once('"').unwrap().0);
            lazy.push(target.clone());
            let res = get(&engine, &target, Some(BROWSER)).await;
            assert_eq!(res.status, 200, "{target}");
            assert_eq!(res.header("cache-control"), Some("public, max-age=31536000, immutable"), "{target}");
        }
    }
    let lazy_names: Vec<_> = lazy.iter().map(|p| p.split('.').next().unwrap()).collect();
    assert_eq!(lazy_names, ["/assets/moderator", "/assets/reactions", "/assets/reply"], "{lazy:?}");

    // A page from an older release asks for the plain names: they answer, briefly cached, with the
    // files as they are in the repository (plain imports).
    let plain = get(&engine, "/assets/widget.js", Some(BROWSER)).await;
    assert_eq!(plain.header("cache-control"), Some("public, max-age=300"));
    let plain = String::from_utf8(decoded(&plain)).unwrap();
    assert!(plain.contains("from \"./client.js\""), "the plain name serves the repository's file");
    assert_eq!(get(&engine, "/assets/widget.css", None).await.header("cache-control"), Some("public, max-age=300"));

    // Another release's hash, or no such file: 404, and nobody keeps that answer.
    for path in ["/assets/widget.00000000.js", "/assets/widget.0000000.css", "/assets/nothing.js", "/assets/index.html", "/assets/embed.js"]
    {
        let res = engine.get(path).await;
        res.assert_error(404, "not_found");
        assert_eq!(res.header("cache-control"), Some("no-store"), "{path}");
    }
}
