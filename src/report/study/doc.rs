//! A small document model (headings, paragraphs, lists, tables, figures) with two renderers,
//! Markdown and self-contained HTML, so both reports say exactly the same thing and each
//! escapes text its own way.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Inline {
    Text(String),
    Strong(String),
    Em(String),
    Code(String),
}

/// Builders so content code reads like prose.
pub fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}
pub fn b(s: impl Into<String>) -> Inline {
    Inline::Strong(s.into())
}
pub fn em(s: impl Into<String>) -> Inline {
    Inline::Em(s.into())
}
pub fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub caption: Vec<Inline>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns holding numbers (right-aligned).
    pub numeric: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// PNG file name, relative to the report.
    pub png: String,
    /// SVG file name, relative to the report.
    pub svg: String,
    pub alt: String,
    pub caption: Vec<Inline>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Heading(u8, String),
    Para(Vec<Inline>),
    /// A notice the reader must not miss (simulated data).
    Banner(Vec<Inline>),
    List {
        ordered: bool,
        items: Vec<Vec<Inline>>,
    },
    Table(Table),
    Figure(Figure),
    Rule,
}

// ---------------------------------------------------------------- Markdown

fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '<' | '>' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn md_inlines(parts: &[Inline]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Inline::Text(s) => md_escape(s),
            Inline::Strong(s) => format!("**{}**", md_escape(s)),
            Inline::Em(s) => format!("*{}*", md_escape(s)),
            Inline::Code(s) => format!("`{}`", s.replace('`', "'")),
        })
        .collect()
}

fn md_cell(s: &str) -> String {
    md_escape(s).replace('|', "\\|").replace('\n', " ")
}

pub fn to_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(
                    out,
                    "{} {}\n",
                    "#".repeat(usize::from(*level).clamp(1, 6)),
                    md_escape(text)
                );
            }
            Block::Para(parts) => {
                let _ = writeln!(out, "{}\n", md_inlines(parts));
            }
            Block::Banner(parts) => {
                let _ = writeln!(out, "> {}\n", md_inlines(parts));
            }
            Block::List { ordered, items } => {
                for (i, item) in items.iter().enumerate() {
                    let marker = if *ordered {
                        format!("{}.", i + 1)
                    } else {
                        "-".into()
                    };
                    let _ = writeln!(out, "{marker} {}", md_inlines(item));
                }
                out.push('\n');
            }
            Block::Table(table) => {
                if !table.caption.is_empty() {
                    let _ = writeln!(out, "{}\n", md_inlines(&table.caption));
                }
                let row = |cells: &[String]| {
                    format!(
                        "| {} |",
                        cells
                            .iter()
                            .map(|c| md_cell(c))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                };
                let _ = writeln!(out, "{}", row(&table.header));
                let rule: Vec<String> = (0..table.header.len())
                    .map(|i| {
                        if table.numeric.get(i).copied().unwrap_or(false) {
                            "---:".into()
                        } else {
                            "---".into()
                        }
                    })
                    .collect();
                let _ = writeln!(out, "| {} |", rule.join(" | "));
                for r in &table.rows {
                    let _ = writeln!(out, "{}", row(r));
                }
                out.push('\n');
            }
            Block::Figure(fig) => {
                let _ = writeln!(out, "![{}]({})\n", md_escape(&fig.alt), fig.png);
                let _ = writeln!(
                    out,
                    "{} (vector version: [{}]({}))\n",
                    md_inlines(&fig.caption),
                    md_escape(&fig.svg),
                    fig.svg
                );
            }
            Block::Rule => out.push_str("---\n\n"),
        }
    }
    out
}

// ---------------------------------------------------------------- HTML

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn html_inlines(parts: &[Inline]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Inline::Text(s) => html_escape(s),
            Inline::Strong(s) => format!("<strong>{}</strong>", html_escape(s)),
            Inline::Em(s) => format!("<em>{}</em>", html_escape(s)),
            Inline::Code(s) => format!("<code>{}</code>", html_escape(s)),
        })
        .collect()
}

/// No request may leave the page: everything is inline, and the policy forbids the rest.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

const CSS: &str = "
body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1.2em;color:#1f2328;line-height:1.5;font-size:15px}
h1{font-size:1.8em;border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.4em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.15em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
caption{caption-side:top;text-align:left;padding:.3em 0;color:#424a53}
th,td{border:1px solid #d0d7de;padding:.3em .6em;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fbfcfd}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #d0d7de}
figcaption{color:#424a53;font-size:.92em}
code{background:#f6f8fa;padding:.1em .3em;border-radius:3px;font-size:.9em}
.banner{border-left:6px solid #bf8700;background:#fff8c5;padding:.7em 1em;margin:1em 0}
hr{border:0;border-top:1px solid #d0d7de;margin:2em 0}
";

/// The whole page. `image` maps a figure's PNG file name to a `data:` URI (or `None` to
/// fall back to the alternative text, which keeps the page self-contained either way).
pub fn to_html(title: &str, blocks: &[Block], image: &dyn Fn(&Figure) -> Option<String>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        html_escape(title)
    );
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let l = (*level).clamp(1, 6);
                let _ = writeln!(out, "<h{l}>{}</h{l}>", html_escape(text));
            }
            Block::Para(parts) => {
                let _ = writeln!(out, "<p>{}</p>", html_inlines(parts));
            }
            Block::Banner(parts) => {
                let _ = writeln!(
                    out,
                    "<div class=\"banner\" role=\"note\">{}</div>",
                    html_inlines(parts)
                );
            }
            Block::List { ordered, items } => {
                let tag = if *ordered { "ol" } else { "ul" };
                let _ = writeln!(out, "<{tag}>");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", html_inlines(item));
                }
                let _ = writeln!(out, "</{tag}>");
            }
            Block::Table(table) => {
                out.push_str("<table>\n");
                if !table.caption.is_empty() {
                    let _ = writeln!(out, "<caption>{}</caption>", html_inlines(&table.caption));
                }
                out.push_str("<thead><tr>");
                for h in &table.header {
                    let _ = write!(out, "<th scope=\"col\">{}</th>", html_escape(h));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in &table.rows {
                    out.push_str("<tr>");
                    for (i, c) in r.iter().enumerate() {
                        let class = if table.numeric.get(i).copied().unwrap_or(false) {
                            " class=\"num\""
                        } else {
                            ""
                        };
                        let _ = write!(out, "<td{class}>{}</td>", html_escape(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
            Block::Figure(fig) => {
                out.push_str("<figure>\n");
                match image(fig) {
                    Some(uri) => {
                        let _ = writeln!(
                            out,
                            "<img src=\"{}\" alt=\"{}\">",
                            html_escape(&uri),
                            html_escape(&fig.alt)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "<p><em>[chart unavailable: {}]</em></p>",
                            html_escape(&fig.alt)
                        );
                    }
                }
                let _ = writeln!(
                    out,
                    "<figcaption>{}</figcaption>\n</figure>",
                    html_inlines(&fig.caption)
                );
            }
            Block::Rule => out.push_str("<hr>\n"),
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Block> {
        vec![
            Block::Heading(2, "5.1 Throughput".into()),
            Block::Banner(vec![b("Simulated results."), t(" Not measured <here>.")]),
            Block::Table(Table {
                caption: vec![b("Table 5.1."), t(" Output a|b")],
                header: vec!["Framework".into(), "TPS".into()],
                rows: vec![vec!["vLLM".into(), "1,234.5".into()]],
                numeric: vec![false, true],
            }),
            Block::List {
                ordered: true,
                items: vec![vec![t("one_two "), code("a_b")]],
            },
        ]
    }

    #[test]
    fn markdown_snapshot() {
        let md = to_markdown(&sample());
        assert_eq!(
            md,
            "## 5.1 Throughput\n\n\
             > **Simulated results.** Not measured \\<here\\>.\n\n\
             **Table 5.1.** Output a|b\n\n\
             | Framework | TPS |\n| --- | ---: |\n| vLLM | 1,234.5 |\n\n\
             1. one\\_two `a_b`\n\n"
        );
    }

    #[test]
    fn html_escapes_and_carries_a_strict_policy() {
        let html = to_html("a <b>", &sample(), &|_| None);
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
        assert!(html.contains("Not measured &lt;here&gt;."));
        assert!(html.contains("<td class=\"num\">1,234.5</td>"));
        assert!(html.contains("default-src 'none'"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
