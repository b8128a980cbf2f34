//! The documentation against the code: README.md and docs/*.md.
//!
//! - Every ```toml block passes `certvakt check-config` as a drop-in beside a main file that
//!   points the daemon at a temporary state folder and at the real plugins (the test-only
//!   `simca` one included, as its example says). A block whose first line is
//!   `# fragment of a [[certificate]]` is checked inside a minimal `[[certificate]]`; one
//!   with a line `# the certificate at cert is in use already` gets a certificate at each
//!   `cert` it names (in the temporary folder), since it does not describe a first issue.
//! - The quick start's drop-in, written by its `tee` commands, passes check-config too.
//! - Every relative link points at a file of the tree, and a `#anchor` at a heading there.
//! - Every message quoted in docs/troubleshooting.md (its `> ` lines) still occurs in the
//!   source: most of its text, in long pieces, is found in the `.rs` files of the daemon,
//!   the plugins and the plugin API, so a message reworded in the code makes this fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use certvakt_testkit::harness;

use crate::common::{bins, stderr, stdout};

/// The first line that marks a block as part of a `[[certificate]]`.
const FRAGMENT: &str = "# fragment of a [[certificate]]";

/// A line that marks a block as describing certificates already in use: each `cert` it names
/// is given a certificate (subject O and CN) before the check, as a first issue is not meant.
const IN_USE: &str = "# the certificate at cert is in use already";

/// The plugins whose examples the docs show.
const PLUGINS: &[&str] = &[
    "certvakt-plugin-acme",
    "certvakt-plugin-manual",
    "certvakt-plugin-dk-fmk",
    "certvakt-plugin-dk-nemlogin",
    "certvakt-plugin-no-nhn",
    "certvakt-plugin-se-efrikort",
    "certvakt-plugin-fi-kanta",
    "certvakt-plugin-simca",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md, then docs/*.md in name order.
fn pages() -> Result<Vec<PathBuf>> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .context("reading docs/")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    docs.retain(|p| p.extension().is_some_and(|e| e == "md"));
    docs.sort();
    assert!(docs.len() >= 8, "docs/ has only {} pages", docs.len());
    let mut pages = vec![repo().join("README.md")];
    pages.extend(docs);
    Ok(pages)
}

fn name(page: &Path) -> String {
    page.strip_prefix(repo())
        .unwrap_or(page)
        .display()
        .to_string()
}

/// The fenced blocks of `text` in `lang`, with the line number of their first line.
fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == format!("```{lang}") => current = Some((n + 2, String::new())),
            Some(_) if trimmed == "```" => found.extend(current.take()),
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    found
}

/// A self-signed certificate with an organisation and a common name, as one in use would have.
fn certificate_in_use() -> Result<String> {
    let mut params = rcgen::CertificateParams::new(vec!["apotek.example".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Apotek AS");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "apotek.example");
    let key = rcgen::KeyPair::generate()?;
    Ok(params.self_signed(&key)?.pem())
}

/// A folder with a main configuration (state, socket and plugins in the folder, no metrics)
/// and `body` as its drop-in `conf.d/50-example.toml`; the secret files that the examples
/// keep in /etc/certvakt/secrets/ are made in the folder instead.
fn check_config(bins: &harness::Bins, plugins: &Path, body: &str) -> Result<std::process::Output> {
    let dir = tempfile::tempdir()?;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let mut body = body.replace(
        "\"/etc/certvakt/secrets/",
        &format!("\"{}/", secrets.display()),
    );
    if body.lines().any(|l| l.trim_start().starts_with(IN_USE)) {
        let in_use = dir.path().join("in-use");
        std::fs::create_dir_all(&in_use)?;
        let mut lines = Vec::new();
        for (n, line) in body.lines().enumerate() {
            if line.trim_start().starts_with("cert = \"") {
                let file = in_use.join(format!("cert-{n}.pem"));
                std::fs::write(&file, certificate_in_use()?)?;
                lines.push(format!("cert = \"{}\"", file.display()));
            } else {
                lines.push(line.to_owned());
            }
        }
        body = lines.join("\n") + "\n";
    }
    for file in body
        .split('"')
        .filter_map(|s| s.strip_prefix(&format!("{}/", secrets.display())))
    {
        std::fs::write(secrets.join(file), "a secret\n")?;
    }
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir_all(&conf_d)?;
    let main = dir.path().join("certvakt.toml");
    std::fs::write(
        &main,
        format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nplugin_dir = \"{p}\"\n\n[control]\nsocket = \"{d}/control.sock\"\n\n[metrics]\nlisten = \"\"\n",
            d = dir.path().display(),
            p = plugins.display()
        ),
    )?;
    std::fs::write(conf_d.join("50-example.toml"), body)?;
    Ok(Command::new(&bins.certvakt)
        .arg("--config")
        .arg(&main)
        .arg("check-config")
        .output()?)
}

#[test]
fn every_toml_block_in_the_docs_passes_check_config() -> Result<()> {
    let bins = bins()?;
    let plugins_dir = tempfile::tempdir()?;
    let plugins = plugins_dir.path().join("plugins");
    harness::install_plugins(&bins, &plugins, PLUGINS)?;
    let mut checked = 0;
    let mut fragments = 0;
    let mut failures = Vec::new();
    for page in pages()? {
        let text = std::fs::read_to_string(&page)?;
        for (line, block) in blocks(&text, "toml") {
            let body = if block.trim_start().starts_with(FRAGMENT) {
                fragments += 1;
                format!(
                    "[[certificate]]\nid = \"fragment\"\ncert = \"/etc/certvakt/certs/fragment/cert.pem\"\nplugin = \"manual\"\n{block}\n[certificate.settings]\nca_name = \"the fragment's CA\"\nsans = [\"DNS:fragment.example\"]\n"
                )
            } else {
                block
            };
            let out = check_config(&bins, &plugins, &body)?;
            checked += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{}:{line}:\n{}{}",
                    name(&page),
                    stdout(&out),
                    stderr(&out)
                ));
            }
        }
    }
    assert!(checked >= 8, "only {checked} ```toml blocks found");
    assert!(fragments >= 1, "no block is marked {FRAGMENT:?}");
    assert!(
        failures.is_empty(),
        "{} of {checked} ```toml blocks fail check-config:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The text the quick start's `tee` commands write to /etc/certvakt/conf.d/quickstart.toml.
fn quickstart_drop_in(readme: &str) -> Result<String> {
    let begin = readme
        .find("<!-- quickstart:begin -->")
        .context("the README has no <!-- quickstart:begin --> marker")?;
    let end = readme
        .find("<!-- quickstart:end -->")
        .context("the README has no <!-- quickstart:end --> marker")?;
    let mut drop_in = String::new();
    let mut inside = false;
    for line in readme[begin..end].lines() {
        if inside {
            if line == "EOF" {
                inside = false;
            } else {
                drop_in.push_str(line);
                drop_in.push('\n');
            }
        } else if line.contains("tee") && line.contains("/etc/certvakt/conf.d/quickstart.toml") {
            if !line.contains("-a ") {
                drop_in.clear();
            }
            inside = line.ends_with("<<'EOF'");
        }
    }
    if drop_in.is_empty() {
        bail!("the quick start writes no /etc/certvakt/conf.d/quickstart.toml with tee <<'EOF'");
    }
    Ok(drop_in)
}

#[test]
fn the_quick_starts_drop_in_passes_check_config() -> Result<()> {
    let bins = bins()?;
    let plugins_dir = tempfile::tempdir()?;
    let plugins = plugins_dir.path().join("plugins");
    harness::install_plugins(&bins, &plugins, &["certvakt-plugin-manual"])?;
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let drop_in = quickstart_drop_in(&readme)?;
    assert!(drop_in.contains("[[watch]]"), "{drop_in}");
    assert!(drop_in.contains("[[certificate]]"), "{drop_in}");
    let out = check_config(&bins, &plugins, &drop_in)?;
    assert!(
        out.status.success(),
        "{drop_in}\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The check is not blind: a misspelt plugin in the same drop-in is a problem.
    let out = check_config(
        &bins,
        &plugins,
        &drop_in.replace("plugin = \"manual\"", "plugin = \"manaul\""),
    )?;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    Ok(())
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page's headings (outside fenced blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line));
        }
    }
    found
}

/// The targets of the `[text](target)` links of a page, outside fenced blocks.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(close) = after.find(')') else { break };
            found.push(after[..close].to_owned());
            rest = &after[close..];
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file_and_heading() -> Result<()> {
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages()? {
        let text = std::fs::read_to_string(&page)?;
        let folder = page.parent().context("a page has a folder")?;
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                folder.join(file)
            };
            if !path.exists() {
                bad.push(format!(
                    "{}: {target}: {} does not exist",
                    name(&page),
                    path.display()
                ));
                continue;
            }
            if let Some(fragment) = fragment {
                let heads = anchors(&std::fs::read_to_string(&path)?);
                if !heads.iter().any(|h| h == fragment) {
                    bad.push(format!("{}: {target}: no heading #{fragment}", name(&page)));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} relative links found");
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    Ok(())
}

/// The `.rs` files of the daemon, the plugins and the plugin API, tests left out, with string
/// continuations joined and escapes undone as the message prints them.
fn source_text() -> Result<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if file_name != "tests" && file_name != "golden" {
                    walk(&path, out)?;
                }
            } else if file_name.ends_with(".rs") && !file_name.starts_with("tests") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(&repo().join("daemon/src"), &mut files)?;
    walk(&repo().join("plugin-api/src"), &mut files)?;
    for entry in std::fs::read_dir(repo().join("plugins"))? {
        let src = entry?.path().join("src");
        if src.is_dir() {
            walk(&src, &mut files)?;
        }
    }
    let mut text = String::new();
    for file in files {
        let raw = std::fs::read_to_string(&file)?;
        // A `\` at the end of a line continues the string without the line break and indent.
        let mut joined = String::with_capacity(raw.len());
        let mut lines = raw.split('\n').peekable();
        while let Some(line) = lines.next() {
            if let Some(head) = line.strip_suffix('\\') {
                joined.push_str(head);
                if let Some(next) = lines.peek_mut() {
                    *next = next.trim_start();
                }
            } else {
                joined.push_str(line);
                joined.push('\n');
            }
        }
        text.push_str(
            &joined
                .replace("\\\"", "\"")
                .replace("{{", "{")
                .replace("}}", "}"),
        );
    }
    Ok(text)
}

/// Which characters of `quote` are found in `source`, in pieces of at least `MIN_PIECE`
/// characters starting anywhere, and the longest piece.
fn coverage(quote: &str, source: &str) -> (Vec<bool>, usize) {
    const MIN_PIECE: usize = 12;
    let chars: Vec<char> = quote.chars().collect();
    let occurs = |from: usize, len: usize| {
        let piece: String = chars[from..from + len].iter().collect();
        source.contains(&piece)
    };
    let mut covered = vec![false; chars.len()];
    let mut longest = 0;
    // Where the piece found last ends: a piece from inside it occurs at least up to there.
    let mut end: usize = 0;
    for at in 0..chars.len() {
        let rest = chars.len() - at;
        let known = end.saturating_sub(at);
        let mut low = if known >= MIN_PIECE {
            known
        } else if rest >= MIN_PIECE && occurs(at, MIN_PIECE) {
            MIN_PIECE
        } else {
            continue;
        };
        // The longest piece from `at` that occurs: every prefix of an occurring piece occurs.
        if low < rest && occurs(at, low + 1) {
            let mut high = rest;
            low += 1;
            while low < high {
                let mid = (low + high).div_ceil(2);
                if occurs(at, mid) {
                    low = mid;
                } else {
                    high = mid - 1;
                }
            }
        }
        covered[at..at + low].iter_mut().for_each(|c| *c = true);
        longest = longest.max(low);
        end = end.max(at + low);
    }
    (covered, longest)
}

/// The words of this page's examples that are values, not message text (ids, names, a CA's
/// name, the operating system's own error text), and the label of a hint line.
#[rustfmt::skip]
const ALLOWED_WORDS: &[&str] = &[
    "kanta", "server", "quickstart", "web", "nosuch", "alice", "manaul", "bogus", "pharmacy",
    "the", "quick", "start's", "test", "CA", "Address", "already", "in", "use", "os", "error",
    "hint",
];

/// Whether `word` is spelt in the source as a name with an underscore (a key), next to a value
/// in a format string (`word {`, `} word`), or, in a hint's list of names, as a string of its
/// own (`"word"`).
fn literal_or_beside_a_value(word: &str, in_hint: bool, source: &str) -> bool {
    (in_hint && source.contains(&format!("\"{word}\"")))
        || (word.contains('_') && source.contains(word))
        || source.contains(&format!("{word} {{"))
        || source.contains(&format!("}} {word}"))
}

/// Whether the message text of `quote` is in the source: what is not found there in long
/// pieces may only be values — words with a digit, a `/` or a `.` (numbers, paths, files),
/// the allowed words above, or words the source spells on their own or beside a value.
fn found_in(quote: &str, source: &str) -> std::result::Result<(), String> {
    let (covered, longest) = coverage(quote, source);
    if longest < 25 {
        return Err(format!(
            "its longest piece found in the source has {longest} characters"
        ));
    }
    // A word counts as found only when all of it is: a value partly matched by chance is not.
    let chars: Vec<char> = quote.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '\'');
    let mut covered = covered;
    let mut at = 0;
    while at < chars.len() {
        let end = (at..chars.len())
            .find(|&i| !is_word(chars[i]))
            .unwrap_or(chars.len());
        if end > at && covered[at..end].contains(&false) {
            covered[at..end].iter_mut().for_each(|c| *c = false);
        }
        at = end + 1;
    }
    let missing: String = chars
        .iter()
        .zip(&covered)
        .map(|(c, found)| if *found { ' ' } else { *c })
        .collect();
    let unknown: Vec<&str> = missing
        .split_whitespace()
        .filter(|chunk| {
            !chunk.contains(['/', '.']) && !chunk.contains(|c: char| c.is_ascii_digit())
        })
        .flat_map(|chunk| chunk.split(|c: char| !is_word(c)))
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .filter(|word| !ALLOWED_WORDS.contains(word))
        .filter(|word| !literal_or_beside_a_value(word, quote.starts_with("hint:"), source))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("not in the source: {}", unknown.join(" ")))
    }
}

#[test]
fn every_message_quoted_in_troubleshooting_occurs_in_the_source() -> Result<()> {
    let page = std::fs::read_to_string(repo().join("docs/troubleshooting.md"))?;
    let source = source_text()?;
    let quotes: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .collect();
    assert!(quotes.len() >= 15, "only {} quoted messages", quotes.len());
    let mut stale = Vec::new();
    for quote in &quotes {
        if let Err(why) = found_in(quote, &source) {
            stale.push(format!("{quote}\n    ({why})"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/troubleshooting.md quotes messages the source no longer prints:\n{}",
        stale.join("\n")
    );
    // The check is not blind: one word of a message changed fails it.
    assert!(
        found_in(
            "certvakt: certvaktd is not listening: no control socket at /run/certvakt/control.sock (start it with `systemctl start certvakt`, or pass --socket)",
            &source
        )
        .is_err()
    );
    Ok(())
}
