//! Hand-written PDF files for the PDF and CLI tests: small, valid, made at test time.
#![allow(dead_code)]

/// A PDF with `pages` US-letter pages; page `i` shows a black bar whose width grows
/// with `i` and the text "Page i" in Helvetica. With `encrypt`, the trailer names a
/// standard security handler whose user password is not empty, so readers must refuse
/// it without a password.
pub fn make_pdf(pages: usize, encrypt: bool) -> Vec<u8> {
    // Object numbers: 1 catalog, 2 page tree, 3 font, then per page (page, content), then encrypt.
    let mut objects: Vec<String> = Vec::new();
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" ")));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into());
    for i in 0..pages {
        let content = format!(
            "0 0 0 rg 72 {} {} 36 re f BT /F1 24 Tf 72 600 Td (Page {}) Tj ET",
            700,
            60 + 20 * (i % 20),
            i + 1
        );
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
    }
    let encrypt_ref = if encrypt {
        // RC4 40-bit (V1 R2). The O and U entries do not correspond to an empty user
        // password, so opening without a password fails the password check.
        let o = "<".to_string() + &"4f".repeat(32) + ">";
        let u = "<".to_string() + &"55".repeat(32) + ">";
        objects.push(format!("<< /Filter /Standard /V 1 /R 2 /O {o} /U {u} /P -44 >>"));
        Some(objects.len())
    } else {
        None
    };

    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    let mut trailer = format!("<< /Size {} /Root 1 0 R", objects.len() + 1);
    if let Some(e) = encrypt_ref {
        trailer +=
            &format!(" /Encrypt {e} 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]");
    }
    trailer += " >>";
    out.extend_from_slice(format!("trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n").as_bytes());
    out
}

/// Something that starts like a PDF and then is garbage.
pub fn corrupt_pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nthis is not a pdf at all\n".to_vec()
}
