//! The headless-Chromium harness itself (`hps_tests::browser`): what it
//! reports for pages with and without errors. Each test writes its page in
//! its own temp dir; where Chromium cannot start, each prints `SKIPPED`.

use std::path::Path;

use hps_tests::{chromium_or_skip, Chromium, Loaded};

/// Write `body` as `<tmp>/<name>.html` and load it, screenshots in
/// `<tmp>/shots`.
fn load(chromium: &Chromium, tmp: &Path, name: &str, body: &str) -> Loaded {
    let page = tmp.join(format!("{name}.html"));
    std::fs::write(
        &page,
        format!("<!doctype html><html><body>{body}</body></html>"),
    )
    .unwrap();
    chromium
        .load(&page, &tmp.join("shots"))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 100,
        "{} is not a PNG ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[test]
fn a_clean_page_has_no_errors_and_its_dom_shows_what_its_script_wrote() {
    let Some(chromium) = chromium_or_skip("browser::clean_page") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        &chromium,
        tmp.path(),
        "clean",
        "<h1>static</h1><div style=\"height: 3000px\">tall</div><script>\
           console.log('just a log'); console.warn('just a warning');\
           const p = document.createElement('p'); p.id = 'inserted';\
           p.textContent = 'written by ' + 'the script'; document.body.appendChild(p);\
           setTimeout(() => document.body.dataset.later = 'yes', 50);\
         </script>",
    );
    assert!(
        loaded.console_errors.is_empty(),
        "{:?}",
        loaded.console_errors
    );
    assert!(
        loaded
            .dom
            .contains(r#"<p id="inserted">written by the script</p>"#),
        "{}",
        loaded.dom
    );
    assert!(loaded.dom.contains(r#"data-later="yes""#), "{}", loaded.dom);
    assert_eq!(
        loaded.screenshot,
        tmp.path().join("shots").join("clean.png")
    );
    assert_png(&loaded.screenshot);
}

#[test]
fn console_error_is_reported() {
    let Some(chromium) = chromium_or_skip("browser::console_error") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        &chromium,
        tmp.path(),
        "boom",
        "<script>console.log('fine'); console.error('boom', 42);</script>",
    );
    assert_eq!(loaded.console_errors, ["console.error: boom 42"]);
    assert_png(&loaded.screenshot);
}

#[test]
fn a_syntax_error_is_reported() {
    let Some(chromium) = chromium_or_skip("browser::syntax_error") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        &chromium,
        tmp.path(),
        "syntax",
        "<script>let x = ;</script>",
    );
    assert_eq!(
        loaded.console_errors.len(),
        1,
        "{:?}",
        loaded.console_errors
    );
    assert!(
        loaded.console_errors[0].contains("SyntaxError"),
        "{:?}",
        loaded.console_errors
    );
}

#[test]
fn uncaught_exceptions_and_rejections_are_reported() {
    let Some(chromium) = chromium_or_skip("browser::uncaught") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        &chromium,
        tmp.path(),
        "uncaught",
        "<script>throw new TypeError('thrown at load');</script>\
         <script>setTimeout(() => { throw new Error('thrown later'); }, 20);</script>\
         <script>Promise.reject(new Error('rejected'));</script>\
         <script>console.assert(1 === 2, 'one is not two');</script>",
    );
    let errors = loaded.console_errors.join("\n");
    assert_eq!(loaded.console_errors.len(), 4, "{errors}");
    for part in [
        "TypeError: thrown at load",
        "Error: thrown later",
        "Error: rejected",
        "console.assert: one is not two",
    ] {
        assert!(errors.contains(part), "`{part}` missing from:\n{errors}");
    }
}

#[test]
fn a_missing_script_file_is_reported() {
    let Some(chromium) = chromium_or_skip("browser::missing_script") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        &chromium,
        tmp.path(),
        "missing",
        "<script src=\"not-there.js\"></script>",
    );
    assert_eq!(
        loaded.console_errors.len(),
        1,
        "{:?}",
        loaded.console_errors
    );
    assert!(
        loaded.console_errors[0].contains("not-there.js"),
        "{:?}",
        loaded.console_errors
    );
}

#[test]
fn a_missing_page_is_an_error_not_a_pass() {
    let Some(chromium) = chromium_or_skip("browser::missing_page") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = chromium
        .load(&tmp.path().join("nope.html"), tmp.path())
        .expect_err("a page that does not exist");
    assert!(err.to_string().contains("nope.html"), "{err}");
}
