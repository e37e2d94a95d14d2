pub fn render_envelopes_pdf() {}
pub struct PdfOptions;
