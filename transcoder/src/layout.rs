//! Where each picture goes in a composite (issue 14): the layouts a conference can take, the
//! tiles each makes on the output canvas, and the canvas the compositor draws them on.
//!
//! Tiles are computed, not configured: a layout and the number of pictures give them, so the
//! same (layout, size) always gives the same picture for every receiver that shares it. All
//! edges are even, as 4:2:0 chroma needs.

use std::collections::HashMap;

use codecs::scale::Scaler;
use codecs::{CodecError, I420Frame};

/// The most pictures a composite shows (a 4x4 grid).
pub const MAX_TILES: usize = 16;

/// How a conference's composite is laid out: one type for the control line, the admin API
/// and the compositor.
pub use protocol::Layout;

/// A rectangle of the canvas, in pixels; all four numbers even.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

fn even(v: usize) -> usize {
    v & !1
}

/// `n` cells of a `cols` x `rows` grid over the rectangle (x, y, w, h), row by row, each
/// cut to 16:9 (the cameras' shape) where the grid's cell is wider or taller than that.
fn cells(
    n: usize,
    cols: usize,
    rows: usize,
    (x, y, w, h): (usize, usize, usize, usize),
) -> Vec<Tile> {
    let (gw, gh) = (w / cols.max(1), h / rows.max(1));
    let (cw, ch) = (even(gw.min(gh * 16 / 9)), even(gh.min(gw * 9 / 16)));
    (0..n)
        .map(|i| Tile {
            x: x + (i % cols) * gw / 2 * 2,
            y: y + (i / cols) * gh / 2 * 2,
            w: cw,
            h: ch,
        })
        .collect()
}

/// The tiles of `layout` for `n` pictures (at most [`MAX_TILES`]) on a `width` x `height`
/// canvas, in the pictures' order. No tile overlaps another or leaves the canvas.
pub fn tiles(layout: Layout, n: usize, width: usize, height: usize) -> Vec<Tile> {
    let n = n.min(MAX_TILES);
    let (width, height) = (even(width), even(height));
    if n == 0 || width < 8 || height < 8 {
        return Vec::new();
    }
    let side = (1..=4).find(|s| s * s >= n).unwrap_or(4);
    // Thumbnails: at least four places in the strip, so one is never wider than a quarter.
    let thumbs = (n - 1).max(4);
    match layout {
        _ if n == 1 => cells(1, 1, 1, (0, 0, width, height)),
        Layout::Grid => cells(n, side, side, (0, 0, width, height)),
        Layout::Speaker => {
            let strip = even(height / 4);
            let mut t = vec![Tile {
                x: 0,
                y: 0,
                w: width,
                h: height - strip,
            }];
            t.extend(cells(n - 1, thumbs, 1, (0, height - strip, width, strip)));
            t
        }
        Layout::Presentation => {
            let strip = even(width / 4);
            let mut t = vec![Tile {
                x: 0,
                y: 0,
                w: width - strip,
                h: height,
            }];
            t.extend(cells(n - 1, 1, thumbs, (width - strip, 0, strip, height)));
            t
        }
    }
}

/// The composite picture: each input scaled into its tile over a black background. Keeps one
/// scaler per (input size, tile size), so a steady layout allocates no scaler per frame.
pub struct Canvas {
    frame: I420Frame,
    scalers: HashMap<ScaleKey, Scaler>,
}

/// (input width and height, tile width and height).
type ScaleKey = ((usize, usize), (usize, usize));

/// Black in BT.601 limited range.
const BLACK: (u8, u8, u8) = (16, 128, 128);

impl Canvas {
    pub fn new(width: usize, height: usize) -> Result<Canvas, CodecError> {
        Ok(Canvas {
            frame: I420Frame::solid(width, height, BLACK)?,
            scalers: HashMap::new(),
        })
    }

    /// Paints the whole canvas black (a tile nobody fills stays black).
    pub fn clear(&mut self) {
        let luma = self.frame.width() * self.frame.height();
        let (y, u, v) = self.frame.planes_mut();
        y[..luma].fill(BLACK.0);
        u.fill(BLACK.1);
        v.fill(BLACK.2);
    }

    /// Draws `picture` scaled into `tile` (which must lie on the canvas).
    pub fn put(&mut self, tile: Tile, picture: &I420Frame) -> Result<(), CodecError> {
        let (cw, ch) = (self.frame.width(), self.frame.height());
        if tile.w == 0 || tile.h == 0 || tile.x + tile.w > cw || tile.y + tile.h > ch {
            return Err(CodecError::Dimensions {
                width: tile.w,
                height: tile.h,
            });
        }
        let key = ((picture.width(), picture.height()), (tile.w, tile.h));
        let scaled;
        let src = if key.0 == key.1 {
            picture
        } else {
            let scaler = match self.scalers.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Scaler::new(key.0, key.1)?)
                }
            };
            scaled = scaler.scale(picture)?;
            &scaled
        };
        let (dy, du, dv) = self.frame.planes_mut();
        let (sy, su, sv) = (src.y(), src.u(), src.v());
        for row in 0..tile.h {
            let d = (tile.y + row) * cw + tile.x;
            dy[d..d + tile.w].copy_from_slice(&sy[row * tile.w..(row + 1) * tile.w]);
        }
        let (hw, cwc) = (tile.w / 2, cw / 2);
        for row in 0..tile.h / 2 {
            let d = (tile.y / 2 + row) * cwc + tile.x / 2;
            du[d..d + hw].copy_from_slice(&su[row * hw..(row + 1) * hw]);
            dv[d..d + hw].copy_from_slice(&sv[row * hw..(row + 1) * hw]);
        }
        Ok(())
    }

    pub fn frame(&self) -> &I420Frame {
        &self.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disjoint(a: &Tile, b: &Tile) -> bool {
        a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y
    }

    fn check(layout: Layout, n: usize) -> Vec<Tile> {
        let t = tiles(layout, n, 1280, 720);
        assert_eq!(t.len(), n.min(MAX_TILES), "{layout:?} x{n}");
        for (i, a) in t.iter().enumerate() {
            assert!(
                a.w > 0 && a.h > 0 && a.x + a.w <= 1280 && a.y + a.h <= 720,
                "{a:?}"
            );
            assert!(
                [a.x, a.y, a.w, a.h].iter().all(|v| v % 2 == 0),
                "odd edge {a:?}"
            );
            for b in &t[i + 1..] {
                assert!(disjoint(a, b), "{layout:?} x{n}: {a:?} overlaps {b:?}");
            }
        }
        t
    }

    #[test]
    fn a_grid_is_the_smallest_square_that_holds_everyone() {
        assert_eq!(
            check(Layout::Grid, 1)[0],
            Tile {
                x: 0,
                y: 0,
                w: 1280,
                h: 720
            }
        );
        let four = check(Layout::Grid, 4);
        assert_eq!(
            four[3],
            Tile {
                x: 640,
                y: 360,
                w: 640,
                h: 360
            }
        );
        assert_eq!(
            check(Layout::Grid, 2)[1],
            Tile {
                x: 640,
                y: 0,
                w: 640,
                h: 360
            }
        );
        assert_eq!(check(Layout::Grid, 5)[4].w, 426);
        assert_eq!(check(Layout::Grid, 9)[8].w, 426);
        assert_eq!(check(Layout::Grid, 10)[9].w, 320);
        assert_eq!(check(Layout::Grid, 40).len(), 16);
        assert!(tiles(Layout::Grid, 0, 1280, 720).is_empty());
        assert!(tiles(Layout::Grid, 3, 4, 4).is_empty());
    }

    #[test]
    fn speaker_and_presentation_give_the_first_picture_the_big_tile() {
        for layout in [Layout::Speaker, Layout::Presentation] {
            for n in 2..=16 {
                let t = check(layout, n);
                let area = |t: &Tile| t.w * t.h;
                assert!(
                    t[1..].iter().all(|o| area(o) * 4 <= area(&t[0])),
                    "{layout:?} x{n}"
                );
            }
        }
        assert_eq!(
            check(Layout::Speaker, 3)[0],
            Tile {
                x: 0,
                y: 0,
                w: 1280,
                h: 540
            }
        );
        assert_eq!(check(Layout::Presentation, 3)[2].y, 180);
        assert_eq!(
            check(Layout::Speaker, 3)[1],
            Tile {
                x: 0,
                y: 540,
                w: 320,
                h: 180
            }
        );
        assert_eq!(check(Layout::Speaker, 16)[15].w, 84);
    }

    #[test]
    fn layouts_are_named_on_the_wire() {
        for l in [Layout::Grid, Layout::Speaker, Layout::Presentation] {
            assert_eq!(l.as_str().parse::<Layout>(), Ok(l));
        }
        assert!("mosaic".parse::<Layout>().is_err());
    }

    #[test]
    fn each_quadrant_holds_its_senders_colour() {
        // Four 640x360 senders of their own colour in a 2x2 grid, one of them scaled from
        // 320x180: each quadrant's mean is its sender's colour.
        let colours = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (210, 16, 146)];
        let mut canvas = Canvas::new(1280, 720).unwrap();
        for (i, (tile, yuv)) in tiles(Layout::Grid, 4, 1280, 720)
            .into_iter()
            .zip(colours)
            .enumerate()
        {
            let (w, h) = if i == 2 { (320, 180) } else { (640, 360) };
            canvas
                .put(tile, &I420Frame::solid(w, h, yuv).unwrap())
                .unwrap();
        }
        for (tile, yuv) in tiles(Layout::Grid, 4, 1280, 720).into_iter().zip(colours) {
            let (y, u, v) = canvas.frame().mean_rect(tile.x, tile.y, tile.w, tile.h);
            let want = (f64::from(yuv.0), f64::from(yuv.1), f64::from(yuv.2));
            assert!(
                (y - want.0).abs() < 2.0 && (u - want.1).abs() < 2.0 && (v - want.2).abs() < 2.0,
                "{tile:?}: ({y}, {u}, {v}) for {yuv:?}"
            );
        }
        // A tile off the canvas is refused; clearing paints black again.
        let off = Tile {
            x: 1000,
            y: 0,
            w: 640,
            h: 360,
        };
        assert!(canvas
            .put(off, &I420Frame::solid(640, 360, colours[0]).unwrap())
            .is_err());
        canvas.clear();
        let (y, u, v) = canvas.frame().mean();
        assert_eq!((y, u, v), (16.0, 128.0, 128.0));
    }
}
