//! Choice of the tile grid for the tiled ("Gundam") path (spec §3.4).
//!
//! The reference scans every grid `(i, j)` with `min ≤ i·j ≤ max` in ascending tile count
//! and keeps the one whose aspect ratio `i/j` is closest to the page's `W/H`. A later grid
//! with exactly the same distance replaces the current one only when the page is large
//! compared to the grid (`W·H > ½·T²·i·j`, T = tile side), so big pages get the finer of
//! two equally shaped grids (2×2 vs 3×3).

/// Tile side of the official tiled mode, and the side below which a page is not tiled.
pub const TILE_SIZE: usize = 640;

/// Fewest tiles of a tiled page (the reference's `min_num`).
pub const MIN_TILES: usize = 2;

/// The candidate grids `(width_tiles, height_tiles)` in the order the reference visits them:
/// ascending tile count, and within one count ascending width.
///
/// The reference's order inside one tile count comes from Python set iteration; it cannot
/// change the outcome, because two grids with the same count never tie for the closest
/// aspect ratio (the unit tests check this against the spec's literal orders).
pub fn candidate_grids(min_tiles: usize, max_tiles: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in min_tiles.max(1)..=max_tiles {
        for i in 1..=n {
            if n % i == 0 {
                v.push((i, n / i));
            }
        }
    }
    v
}

/// The grid `(width_tiles, height_tiles)` for a `w × h` page with 640-pixel tiles.
pub fn choose_tile_grid(w: u32, h: u32, min_tiles: usize, max_tiles: usize) -> (usize, usize) {
    choose_tile_grid_sized(w, h, min_tiles, max_tiles, TILE_SIZE)
}

/// [`choose_tile_grid`] for tiles of side `tile` (the tie rule depends on the tile area).
///
/// Returns `(1, 1)` when no grid is possible (`max_tiles < min_tiles`) or the page is empty.
pub fn choose_tile_grid_sized(w: u32, h: u32, min_tiles: usize, max_tiles: usize, tile: usize) -> (usize, usize) {
    if w == 0 || h == 0 {
        return (1, 1);
    }
    let aspect = f64::from(w) / f64::from(h);
    let area = f64::from(w) * f64::from(h);
    let tile_area = tile as f64 * tile as f64;
    best_grid(aspect, area, tile_area, candidate_grids(min_tiles, max_tiles))
}

/// The scan itself, over candidates in the given order.
fn best_grid(
    aspect: f64,
    area: f64,
    tile_area: f64,
    candidates: impl IntoIterator<Item = (usize, usize)>,
) -> (usize, usize) {
    let mut best = (1, 1);
    let mut best_d = f64::INFINITY;
    for (i, j) in candidates {
        let d = (aspect - i as f64 / j as f64).abs();
        if d < best_d {
            best_d = d;
            best = (i, j);
        } else if d == best_d && area > 0.5 * tile_area * i as f64 * j as f64 {
            best = (i, j);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's literal visiting orders (spec §3.4).
    #[rustfmt::skip]
    const ORDER_9: [(usize, usize); 22] = [
        (1, 2), (2, 1), (3, 1), (1, 3), (2, 2), (4, 1), (1, 4), (5, 1), (1, 5), (1, 6), (6, 1),
        (3, 2), (2, 3), (7, 1), (1, 7), (4, 2), (2, 4), (1, 8), (8, 1), (1, 9), (3, 3), (9, 1),
    ];
    #[rustfmt::skip]
    const ORDER_6: [(usize, usize); 13] = [
        (1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1), (6, 1), (2, 3),
        (1, 6), (3, 2),
    ];

    #[test]
    fn spec_table() {
        type Grid = (usize, usize);
        let table: [((u32, u32), Grid, Grid); 8] = [
            ((800, 600), (3, 2), (3, 2)),
            ((1240, 1754), (2, 3), (2, 3)),
            ((1000, 1000), (2, 2), (2, 2)),
            ((1500, 1500), (3, 3), (2, 2)),
            ((1920, 1080), (4, 2), (2, 1)),
            ((1024, 2048), (2, 4), (1, 2)),
            ((3000, 1000), (3, 1), (3, 1)),
            ((641, 100), (6, 1), (6, 1)),
        ];
        for ((w, h), hf, vllm) in table {
            assert_eq!(choose_tile_grid(w, h, 2, 9), hf, "HF {w}x{h}");
            assert_eq!(choose_tile_grid(w, h, 2, 6), vllm, "vLLM {w}x{h}");
        }
    }

    #[test]
    fn candidate_sets_match_the_reference() {
        for (max, literal) in [(9, &ORDER_9[..]), (6, &ORDER_6[..])] {
            let mut ours = candidate_grids(2, max);
            let mut theirs = literal.to_vec();
            // Same tile counts in the same sequence...
            let counts = |v: &[(usize, usize)]| v.iter().map(|(i, j)| i * j).collect::<Vec<_>>();
            assert_eq!(counts(&ours), counts(&theirs));
            // ... and the same set.
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn order_within_a_count_never_matters() {
        // Sweep page sizes, including exact-ratio pages where ties happen, and compare with
        // the reference's literal order.
        for (max, literal) in [(9, &ORDER_9[..]), (6, &ORDER_6[..])] {
            for w in (1..=4000u32).step_by(7).chain([640, 1280, 1920, 2560, 960, 1600]) {
                for h in (1..=4000u32).step_by(13).chain([320, 640, 1280, 1920, 2560, 1600]) {
                    let area = f64::from(w) * f64::from(h);
                    let a = f64::from(w) / f64::from(h);
                    let theirs = best_grid(a, area, 640.0 * 640.0, literal.iter().copied());
                    assert_eq!(choose_tile_grid(w, h, 2, max), theirs, "{w}x{h} max {max}");
                }
            }
        }
    }

    #[test]
    fn always_at_least_two_tiles() {
        for (w, h) in [(641, 641), (700, 10), (10, 700), (5000, 5000)] {
            let (i, j) = choose_tile_grid(w, h, 2, 9);
            assert!(i * j >= 2);
        }
    }
}
