// MathJax 3's configuration; MathJax itself is served from assets/mathjax/ (copied from the
// installed django-static-mathjax package by docs/hooks/jaxdiff_docs.py), never from a CDN.
// Markdown pages: pymdownx.arithmatex wraps math in `.arithmatex` as \( \) and \[ \];
// notebook pages: nbconvert leaves $ $ and $$ $$ in the Markdown cells' `.jp-RenderedMarkdown`.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  // typeset only there: everything else in the page (Material's .md-container) is skipped,
  // so a stray "$" in text or a table is never math. (An ignore pattern that matches the
  // empty class, like ".*|", would also skip the classless <p> and <li> of a notebook cell.)
  options: {
    ignoreHtmlClass: "md-container",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};
