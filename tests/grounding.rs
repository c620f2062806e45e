//! Grounding parser, coordinate mapping, Markdown rewrite and box drawing (spec §10).

use deepseek_ocr::output::boxes;
use deepseek_ocr::output::grounding::{parse_boxes, parse_refs, to_pixels, PixelBox};
use deepseek_ocr::output::markdown::{crop_jobs, join_pages, rewrite, strip_refs, PAGE_SPLIT};
use image::{Rgb, RgbImage};

#[test]
fn valid_single_ref() {
    let t = "<|ref|>title<|/ref|><|det|>[[10, 20, 300, 40]]<|/det|>\n# Hello";
    let refs = parse_refs(t);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].label, "title");
    assert_eq!(refs[0].boxes, vec![[10.0, 20.0, 300.0, 40.0]]);
    assert_eq!(refs[0].span, 0..t.find('\n').unwrap());
    assert_eq!(&t[refs[0].span.clone()], refs[0].whole);
}

#[test]
fn multiple_refs_and_boxes() {
    let t = "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4], [5,6,7,8]]<|/det|>\nA\n\n\
             <|ref|>image<|/ref|><|det|>[[100, 100, 500, 600]]<|/det|>\n";
    let refs = parse_refs(t);
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0].label, "text");
    assert_eq!(refs[0].boxes, vec![[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]);
    assert_eq!(refs[1].label, "image");
    assert_eq!(refs[1].boxes.len(), 1);
}

#[test]
fn label_spanning_lines_and_non_greedy() {
    // DOTALL and non-greedy: the label may hold a newline; each match stops at the first closer.
    let t = "<|ref|>two\nlines<|/ref|><|det|>[[0,0,1,1]]<|/det|>x<|ref|>b<|/ref|><|det|>[[2,2,3,3]]<|/det|>";
    let refs = parse_refs(t);
    assert_eq!(
        refs.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(),
        ["two\nlines", "b"]
    );
}

#[test]
fn malformed_brackets_keep_good_boxes() {
    // A missing bracket, a triple and a word: only well-formed quadruples survive.
    assert_eq!(
        parse_boxes("[[1, 2, 3, 4], [5, 6, 7], [a, 1, 2, 3], [9, 9, 9, 9]]"),
        vec![[1.0, 2.0, 3.0, 4.0], [9.0, 9.0, 9.0, 9.0]]
    );
    assert_eq!(parse_boxes("[[1, 2, 3, 4"), Vec::<[f64; 4]>::new());
    assert_eq!(parse_boxes("1, 2, 3, 4]]"), Vec::<[f64; 4]>::new());
    assert_eq!(parse_boxes("[[1, 2, 3, 4, 5]]"), Vec::<[f64; 4]>::new());
    assert_eq!(parse_boxes("[]"), Vec::<[f64; 4]>::new());
    assert_eq!(parse_boxes("[1.5, 2, 3e2, 4]"), vec![[1.5, 2.0, 300.0, 4.0]]);
    let refs = parse_refs("<|ref|>text<|/ref|><|det|>[[1, 2, 3]<|/det|>");
    assert_eq!(
        refs.len(),
        1,
        "a bad box list is still a match (it gets removed from the text)"
    );
    assert!(refs[0].boxes.is_empty());
}

#[test]
fn non_numbers_are_skipped() {
    assert!(parse_boxes("[[nan, 1, 2, 3]]").is_empty());
    assert!(parse_boxes("[[inf, 1, 2, 3]]").is_empty());
    assert!(parse_boxes("[[one, two, three, four]]").is_empty());
    assert!(parse_boxes("[[1, 2, , 4]]").is_empty());
}

#[test]
fn missing_closing_tags_are_not_matches() {
    assert!(parse_refs("<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]").is_empty());
    assert!(parse_refs("<|ref|>title<|det|>[[1, 2, 3, 4]]<|/det|>").is_empty());
    assert!(parse_refs("<|ref|>title<|/ref|> <|det|>[[1, 2, 3, 4]]<|/det|>").is_empty());
    // A truncated reference after a complete one leaves the complete one intact.
    let t = "<|ref|>a<|/ref|><|det|>[[1,1,2,2]]<|/det|>ok <|ref|>b<|/ref|><|det|>[[3,3";
    let refs = parse_refs(t);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].label, "a");
    assert!(parse_refs("").is_empty());
    assert!(parse_refs("plain text without tags").is_empty());
}

#[test]
fn coordinates_to_pixels() {
    // int(x / 999 * W): 500/999*1000 = 500.5 -> 500; 999 -> W.
    assert_eq!(
        to_pixels([0.0, 0.0, 999.0, 999.0], 850, 1100),
        PixelBox {
            x1: 0,
            y1: 0,
            x2: 850,
            y2: 1100
        }
    );
    assert_eq!(
        to_pixels([500.0, 250.0, 750.0, 998.0], 1000, 600),
        PixelBox {
            x1: 500,
            y1: 150,
            x2: 750,
            y2: 599
        }
    );
    // Python check: int(123/999*850) = 104, int(456/999*1100) = 502.
    assert_eq!(to_pixels([123.0, 456.0, 124.0, 457.0], 850, 1100).x1, 104);
    assert_eq!(to_pixels([123.0, 456.0, 124.0, 457.0], 850, 1100).y1, 502);
}

#[test]
fn coordinates_out_of_range_are_clamped_and_ordered() {
    assert_eq!(
        to_pixels([-50.0, -1.0, 5000.0, 1200.0], 640, 480),
        PixelBox {
            x1: 0,
            y1: 0,
            x2: 640,
            y2: 480
        }
    );
    // Swapped corners are put in order.
    assert_eq!(
        to_pixels([999.0, 999.0, 0.0, 0.0], 100, 100),
        PixelBox {
            x1: 0,
            y1: 0,
            x2: 100,
            y2: 100
        }
    );
}

#[test]
fn markdown_rewrite_official() {
    let t = "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# T\\coloneqq x\n\n\
             <|ref|>image<|/ref|><|det|>[[0, 0, 499, 499]]<|/det|>\n\n\
             <|ref|>text<|/ref|><|det|>[[5, 6, 7, 8]]<|/det|>\ny \\eqqcolon z\n\
             <|ref|>image<|/ref|><|det|>[[500, 500, 999, 999], [0, 500, 499, 999]]<|/det|>\nend";
    let r = rewrite(t, "doc_images/", false);
    assert_eq!(
        r.markdown,
        "\n# T:= x\n\n![](doc_images/0.png)\n\n\n\ny =: z\n![](doc_images/1.png)\n\nend"
    );
    assert_eq!(r.image_refs.len(), 2);
    // Crops are numbered per box: the second image ref has two boxes -> crops 1 and 2.
    let jobs = crop_jobs(&r.image_refs);
    assert_eq!(
        jobs.iter().map(|j| (j.crop_index, j.ref_index)).collect::<Vec<_>>(),
        [(0, 0), (1, 1), (2, 1)]
    );
    assert_eq!(jobs[2].norm_box, [0.0, 500.0, 499.0, 999.0]);
}

#[test]
fn macro_replacement_needs_a_non_image_ref() {
    // Official quirk: the LaTeX replacements run inside the loop over non-image matches.
    let only_image = "<|ref|>image<|/ref|><|det|>[[0, 0, 9, 9]]<|/det|>\na \\coloneqq b";
    assert_eq!(
        rewrite(only_image, "i/", false).markdown,
        "![](i/0.png)\n\na \\coloneqq b"
    );
    let none = "a \\coloneqq b";
    assert_eq!(rewrite(none, "i/", false).markdown, none);
}

#[test]
fn newline_collapse_for_pdf_pages() {
    let t = "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\na\n\n\n\nb\n\n\nc";
    assert_eq!(rewrite(t, "p/", true).markdown, "\na\n\nb\n\nc");
    assert_eq!(rewrite(t, "p/", false).markdown, "\na\n\n\n\nb\n\n\nc");
}

#[test]
fn strip_and_join() {
    let t = "<|ref|>image<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nx <|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>y";
    assert_eq!(strip_refs(t), "\nx y");
    assert_eq!(join_pages(["a", "b"]), format!("a{PAGE_SPLIT}b{PAGE_SPLIT}"));
}

#[test]
fn drawing_is_deterministic_and_inside_the_box() {
    let page = RgbImage::from_pixel(200, 100, Rgb([255, 255, 255]));
    let refs = parse_refs("<|ref|>title<|/ref|><|det|>[[100, 300, 500, 700]]<|/det|>");
    let a = boxes::draw(&page, &refs);
    let b = boxes::draw(&page, &refs);
    assert_eq!(a, b);
    let p = to_pixels(refs[0].boxes[0], 200, 100);
    let c = boxes::label_colour("title");
    // Outline pixels carry the label colour; a pixel far outside is untouched.
    assert_eq!(*a.get_pixel(p.x1, (p.y1 + p.y2) / 2), c);
    assert_eq!(*a.get_pixel(p.x2, (p.y1 + p.y2) / 2), c);
    assert_eq!(*a.get_pixel(199, 99), Rgb([255, 255, 255]));
    // Inside: a light translucent tint, not white and not the full colour.
    let inside = *a.get_pixel((p.x1 + p.x2) / 2, (p.y1 + p.y2) / 2);
    assert_ne!(inside, Rgb([255, 255, 255]));
    assert!(inside.0.iter().all(|&v| v > 200));
    // Colours differ between labels (deterministic hash).
    assert_ne!(boxes::label_colour("title"), boxes::label_colour("text"));
}

#[test]
fn crops_match_pixel_boxes() {
    let mut page = RgbImage::new(300, 200);
    for (x, y, px) in page.enumerate_pixels_mut() {
        *px = Rgb([x as u8, y as u8, 7]);
    }
    let c = boxes::crop(&page, [333.0, 0.0, 666.0, 999.0]).unwrap();
    let p = to_pixels([333.0, 0.0, 666.0, 999.0], 300, 200);
    assert_eq!(c.dimensions(), (p.width(), p.height()));
    assert_eq!(*c.get_pixel(0, 0), *page.get_pixel(p.x1, p.y1));
    assert!(
        boxes::crop(&page, [10.0, 10.0, 10.0, 50.0]).is_none(),
        "an empty box gives no crop"
    );
}
