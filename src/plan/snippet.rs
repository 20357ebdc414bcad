//! Bounded source snippets for diagnostics: a label on a 5 MB one-line plan, or on a string
//! spanning 40,000 lines, must show a few lines around its start, not the whole file.
//!
//! miette renders every line a label's span touches, in full. When a diagnostic's labels would
//! make it print more than [`MAX_LABEL_LINES`] lines per label or a line longer than
//! [`MAX_LINE_CHARS`], it gets an [`Excerpt`] instead of the whole source: the lines around its
//! labels, each long line cut to a window around the label (`…` where text was cut), each
//! label shortened to the first line of its span. The excerpt reports the original line
//! numbers and columns, so the header still says where in the file the problem is.

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::diagnostic::Label;
use super::yaml::ByteSpan;

/// Lines of one label's span shown at most; a longer span shows its first line.
pub const MAX_LABEL_LINES: usize = 3;
/// Characters of one source line shown at most, in a window around the label.
pub const MAX_LINE_CHARS: usize = 400;
/// Characters of a label's span underlined at most.
const MAX_LABEL_CHARS: usize = 80;
/// Lines of context miette shows around a label (its default), kept in the excerpt.
const CONTEXT_LINES: usize = 1;
/// Bytes of the `…` marking a cut.
const ELLIPSIS: usize = '…'.len_utf8();
/// A secondary label further than this many lines from the primary one is left out of an
/// excerpt (it would show the whole stretch in between).
const MAX_LABEL_DISTANCE: usize = 10;

/// Whether `labels` would print too much of `source` (see the module docs).
pub fn needs_excerpt(source: &str, labels: &[Label]) -> bool {
    labels.iter().any(|label| {
        let start = label.span.start.min(source.len());
        let end = label.span.end.clamp(start, source.len());
        let lines = source.as_bytes()[start..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let (first, last) = line_range(source, start, end);
        let first = first.saturating_sub(CONTEXT_LINES);
        lines > MAX_LABEL_LINES
            || lines_of(source)
                .skip(first)
                .take(last + CONTEXT_LINES + 1 - first)
                .any(|(_, line)| line.chars().count() > MAX_LINE_CHARS)
    })
}

/// A few lines of a source, standing in for the whole of it in a miette rendering.
#[derive(Debug)]
pub struct Excerpt {
    name: String,
    text: String,
    /// 0-based line of the source the excerpt's first line is.
    first_line: usize,
    /// Per excerpt line: bytes of the original line left out before the window, less the `…`
    /// put in their place (added to miette's column, in bytes, to give the original column).
    column_shift: Vec<isize>,
}

impl Excerpt {
    /// The excerpt of `source` around `labels` (the primary first), and the labels moved
    /// into it. Secondary labels far from the primary one are dropped.
    pub fn new(name: &str, source: &str, labels: &[Label]) -> (Excerpt, Vec<Label>) {
        let clamp = |span: &ByteSpan| {
            let start = floor_boundary(source, span.start.min(source.len()));
            let line_end = source[start..]
                .find('\n')
                .map_or(source.len(), |i| start + i);
            let end = span.end.clamp(start, line_end);
            let end = floor_boundary(source, end.min(start + MAX_LABEL_CHARS * 4));
            (start, end)
        };
        let primary_line = labels.first().map_or(0, |l| {
            line_range(source, clamp(&l.span).0, clamp(&l.span).0).0
        });
        let kept: Vec<(&Label, (usize, usize), usize)> = labels
            .iter()
            .map(|l| {
                let span = clamp(&l.span);
                (l, span, line_range(source, span.0, span.0).0)
            })
            .filter(|(_, _, line)| line.abs_diff(primary_line) <= MAX_LABEL_DISTANCE)
            .collect();
        let first = kept.iter().map(|k| k.2).min().unwrap_or(0);
        let last = kept.iter().map(|k| k.2).max().unwrap_or(0);
        let first = first.saturating_sub(CONTEXT_LINES);
        let last = last + CONTEXT_LINES;

        let mut text = String::new();
        let mut column_shift = Vec::new();
        // Per kept label: its new start and end.
        let mut moved: Vec<Option<(usize, usize)>> = vec![None; kept.len()];
        for (index, (line_start, line)) in lines_of(source).enumerate() {
            if index < first {
                continue;
            }
            if index > last {
                break;
            }
            let line_end = line_start + line.len();
            // The window: around the first label starting on this line, else the start.
            let anchor = kept
                .iter()
                .map(|k| k.1)
                .find(|(start, _)| (line_start..=line_end).contains(start))
                .map_or(line_start, |(start, _)| start);
            let (window_start, window_end) = window(source, line_start, line_end, anchor);
            let cut_before = window_start > line_start;
            let cut_after = window_end < line_end;
            if cut_before {
                text.push('…');
            }
            let window_new_start = text.len();
            text.push_str(&source[window_start..window_end]);
            if cut_after {
                text.push('…');
            }
            text.push('\n');
            // miette counts columns in bytes: those cut, less the `…` standing for them.
            let ellipsis = if cut_before { ELLIPSIS } else { 0 };
            column_shift.push((window_start - line_start) as isize - ellipsis as isize);
            for (slot, (_, (start, end), _)) in moved.iter_mut().zip(&kept) {
                if (line_start..=line_end).contains(start) && slot.is_none() {
                    let at = |offset: usize| {
                        window_new_start + offset.clamp(window_start, window_end) - window_start
                    };
                    *slot = Some((at(*start), at(*end)));
                }
            }
        }
        let labels = kept
            .iter()
            .zip(moved)
            .filter_map(|((label, _, _), span)| {
                span.map(|(start, end)| Label {
                    span: start..end,
                    text: label.text.clone(),
                })
            })
            .collect();
        (
            Excerpt {
                name: name.to_string(),
                text,
                first_line: first,
                column_shift,
            },
            labels,
        )
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        let shift = self.column_shift.get(inner.line()).copied().unwrap_or(0);
        let column = inner.column().saturating_add_signed(shift);
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            column,
            inner.line_count(),
        )))
    }
}

/// `(byte offset of the line start, the line without its newline)` for every line.
fn lines_of(source: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    source.split('\n').map(move |line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line.strip_suffix('\r').unwrap_or(line))
    })
}

/// 0-based lines of byte offsets `start` and `end`.
fn line_range(source: &str, start: usize, end: usize) -> (usize, usize) {
    let count = |to: usize| {
        source.as_bytes()[..to.min(source.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    };
    (count(start), count(end))
}

/// At most [`MAX_LINE_CHARS`] of the line `line_start..line_end`, starting a little before
/// `anchor`; byte offsets on character boundaries.
fn window(source: &str, line_start: usize, line_end: usize, anchor: usize) -> (usize, usize) {
    let line = &source[line_start..line_end];
    if line.chars().count() <= MAX_LINE_CHARS {
        return (line_start, line_end);
    }
    let lead = MAX_LINE_CHARS / 4;
    let start = source[line_start..anchor]
        .char_indices()
        .rev()
        .nth(lead - 1)
        .map_or(line_start, |(i, _)| line_start + i);
    let end = source[start..line_end]
        .char_indices()
        .nth(MAX_LINE_CHARS)
        .map_or(line_end, |(i, _)| start + i);
    (start, end)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
