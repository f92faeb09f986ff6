/* The companion book's fixes to its theme, for readers on every screen (loaded on every page).
 *
 * 1. Navigation toggles. pydata-sphinx-theme 0.17 and sphinx-book-theme 1.3 each bind their
 *    sidebar toggles to the *first* element of class primary-toggle / secondary-toggle, a button
 *    of the theme's header that this book never shows; the buttons the reader sees (the menu
 *    button and, on phones, "Contents") did nothing. A click on any other such button is passed
 *    on to the one the themes listen to, as long as that one is hidden.
 * 2. Wide content on phones. A wide figure keeps at least 80% of its natural size (the size its
 *    text was checked at, companion.plotting.PHONE_MIN_SCALE) and scrolls sideways, with a note
 *    saying so; maths wider than the screen scrolls; numbers in tables ("0.50 ± 0.02") never break.
 * 3. The PDF of the whole book: the theme's "Download PDF" (the browser's print dialog) becomes
 *    a link to the book's PDF when the site has one (`make pdf`). Printing opens every dropdown.
 */
(function () {
  "use strict";
  var PHONE_MIN_SCALE = 0.8;

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }
  function rendered(el) { return el.getClientRects().length > 0; }

  function forwardToggles() {
    ["primary-toggle", "secondary-toggle"].forEach(function (name) {
      var buttons = Array.prototype.slice.call(document.querySelectorAll("." + name));
      var bound = buttons[0];
      buttons.slice(1).forEach(function (button) {
        button.addEventListener("click", function (event) {
          if (rendered(bound)) return; // the themes listen to a visible button: nothing to mend
          event.preventDefault();
          event.stopImmediatePropagation();
          bound.click();
        }, true);
      });
    });
  }

  function markOverflow(el, note) {
    var wide = el.scrollWidth > el.clientWidth + 1;
    el.classList.toggle("companion-scrolls", wide);
    var hint = el.previousElementSibling;
    var has = hint && hint.classList.contains("companion-scroll-hint");
    if (note && wide && !has) {
      hint = document.createElement("p");
      hint.className = "companion-scroll-hint";
      hint.textContent = note;
      el.parentNode.insertBefore(hint, el);
    } else if (has && !wide) {
      hint.remove();
    }
  }

  function wideFigures() {
    document.querySelectorAll("main .cell_output img").forEach(function (img) {
      function size() {
        if (!img.naturalWidth) return;
        img.style.setProperty("--companion-min-width", Math.round(img.naturalWidth * PHONE_MIN_SCALE) + "px");
        markOverflow(img.parentElement, "Wide figure: scroll sideways to see all of it.");
      }
      if (img.complete) size(); else img.addEventListener("load", size);
    });
  }

  function wideMaths() {
    document.querySelectorAll("main mjx-container").forEach(function (maths) {
      var inline = maths.getAttribute("display") !== "true";
      if (inline) {
        var parent = maths.parentElement;
        maths.classList.toggle("companion-wide-inline", maths.getBoundingClientRect().width > parent.clientWidth);
      }
      markOverflow(maths, null);
    });
  }

  function numbersDoNotBreak() {
    var number = /^[\s\d.,+\-−±×%()*]+(?:[eE][+\-−]?\d+)?[\s\d.,+\-−±×%()*]*$/;
    document.querySelectorAll("main table td, main table th").forEach(function (cell) {
      var text = cell.textContent.trim();
      if (text && /\d/.test(text) && number.test(text)) cell.classList.add("companion-number");
    });
  }

  function linkThePdf() {
    // companion.site sets window.companionPdf when `make pdf` has put the book's PDF in the site
    if (!window.companionPdf) return;
    var url = (document.documentElement.dataset.content_root || "") + window.companionPdf;
    document.querySelectorAll(".btn-download-pdf-button").forEach(function (button) {
      var link = document.createElement("a");
      link.href = url;
      link.className = button.className;
      link.title = "The whole book as one PDF, proofs and solutions included";
      link.innerHTML = button.innerHTML;
      link.querySelectorAll(".btn__text-container").forEach(function (t) { t.textContent = "PDF of the book"; });
      button.replaceWith(link);
    });
  }

  function openForPrint() {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  }

  ready(function () {
    forwardToggles();
    numbersDoNotBreak();
    wideFigures();
    linkThePdf();
    var mathjax = window.MathJax && MathJax.startup && MathJax.startup.promise;
    (mathjax || Promise.resolve()).then(wideMaths);
    window.addEventListener("resize", function () { wideFigures(); wideMaths(); });
    window.addEventListener("beforeprint", openForPrint);
  });
  window.companionOpenForPrint = openForPrint;
})();
