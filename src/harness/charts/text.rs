//! The drawing backend every chart is drawn on: plotters' bitmap backend
//! with its text layout replaced.
//!
//! plotters 0.3.7 lays out `ab_glyph` text by advancing a caret, but draws
//! each glyph's bitmap at the caret itself instead of at the glyph's pixel
//! bounds (it drops `px_bounds().min.x`, the left side bearing). Every
//! letter is pulled left by its own bearing, so gaps open and close at
//! random: "first byte" reads "first b yte", "10.47" reads "10 .47". Here
//! text is laid out and rasterised with `ab_glyph` directly (caret, kerning,
//! then each outline at its own bounds), and measured the same way, so
//! plotters places labels by the size that is actually drawn.

use std::sync::LazyLock;

use ab_glyph::{Font as _, FontRef, Glyph, PxScale, ScaleFont as _, point};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle,
};

/// DejaVu Sans (free licence, `assets/fonts/`), compiled in so text renders
/// on a machine with no fonts installed.
pub(crate) const REGULAR: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
pub(crate) const BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

static FONTS: LazyLock<(FontRef<'static>, FontRef<'static>)> = LazyLock::new(|| {
    (
        FontRef::try_from_slice(REGULAR).expect("the bundled DejaVuSans.ttf parses"),
        FontRef::try_from_slice(BOLD).expect("the bundled DejaVuSans-Bold.ttf parses"),
    )
});

fn font(style: FontStyle) -> &'static FontRef<'static> {
    match style {
        FontStyle::Bold => &FONTS.1,
        _ => &FONTS.0,
    }
}

/// A line of text placed glyph by glyph: the caret advances by each
/// glyph's advance plus the pair's kerning; the baseline sits at the
/// ascent, so the box runs from the ascent's top to the descent's bottom.
struct Line {
    glyphs: Vec<Glyph>,
    width: f32,
    height: f32,
}

fn layout(style: FontStyle, size: f64, text: &str) -> Line {
    // plotters' size is the pixel height of ascent plus descent, which is
    // what `PxScale` means too.
    let scaled = font(style).as_scaled(PxScale::from(size as f32));
    let ascent = scaled.ascent();
    let mut caret = 0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scaled.scale(), point(caret, ascent)));
        caret += scaled.h_advance(id);
        prev = Some(id);
    }
    Line {
        glyphs,
        width: caret,
        height: ascent - scaled.descent(),
    }
}

/// The pixel size of `text` as [`Canvas`] draws it; `\n` starts a new
/// line (plotters' own text has no line breaks, tick labels need them).
pub(crate) fn text_size(style: FontStyle, size: f64, text: &str) -> (u32, u32) {
    let lines: Vec<Line> = text.split('\n').map(|l| layout(style, size, l)).collect();
    let (w, h) = block_size(&lines);
    (w as u32, h as u32)
}

/// plotters' bitmap backend with correct text (see the module doc).
pub struct Canvas<'a>(pub BitMapBackend<'a>);

type Error<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), Error<'a>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), Error<'a>> {
        self.0.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, color: BackendColor) -> Result<(), Error<'a>> {
        self.0.draw_pixel(p, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Error<'a>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Error<'a>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Error<'a>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Error<'a>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Error<'a>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), Error<'a>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), Error<'a>> {
        Ok(text_size(style.style(), style.size(), text))
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), Error<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let lines: Vec<Line> = text
            .split('\n')
            .map(|l| layout(style.style(), style.size(), l))
            .collect();
        let (w, h) = block_size(&lines);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let transform = style.transform();
        let (cw, ch) = self.get_size();
        let f = font(style.style());
        let mut top = 0;
        for line in lines {
            // Each line aligned within the block as the block is anchored.
            let lw = line.width.round() as i32;
            let left = match anchor.h_pos {
                HPos::Left => 0,
                HPos::Center => (w - lw) / 2,
                HPos::Right => w - lw,
            };
            let step = line_step(&line);
            for g in line.glyphs {
                let Some(outline) = f.outline_glyph(g) else {
                    continue; // a space
                };
                let bounds = outline.px_bounds();
                let mut pixels = Vec::new();
                outline.draw(|x, y, coverage| pixels.push((x, y, coverage)));
                for (x, y, coverage) in pixels {
                    if coverage <= 0.0 {
                        continue;
                    }
                    let (x, y) = transform.transform(
                        bounds.min.x as i32 + x as i32 + left + dx,
                        bounds.min.y as i32 + y as i32 + top + dy,
                    );
                    let (x, y) = (pos.0 + x, pos.1 + y);
                    if x >= 0 && y >= 0 && x < cw as i32 && y < ch as i32 {
                        self.0.draw_pixel(
                            (x, y),
                            BackendColor {
                                alpha: color.alpha * f64::from(coverage.min(1.0)),
                                rgb: color.rgb,
                            },
                        )?;
                    }
                }
            }
            top += step;
        }
        Ok(())
    }
}

/// The distance from one line's top to the next one's.
fn line_step(line: &Line) -> i32 {
    (line.height * 1.1).round() as i32
}

/// Width and height of lines stacked.
fn block_size(lines: &[Line]) -> (i32, i32) {
    let w = lines
        .iter()
        .map(|l| l.width.round() as i32)
        .max()
        .unwrap_or(0);
    let h = match lines.split_last() {
        Some((last, rest)) => rest.iter().map(line_step).sum::<i32>() + last.height.round() as i32,
        None => 0,
    };
    (w, h)
}
