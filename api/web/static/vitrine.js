/*! vitrine.js — the Vitrine site snippet. Apache-2.0. No dependencies.
 *
 * <script src="https://vitrine.example.com/sdk/vitrine.js" defer
 *         data-customer-id="…" data-customer-token="…"></script>
 * <div data-vitrine-placement="home" data-vitrine-title="For you"></div>
 * <div data-vitrine-block="home_top"></div>
 *
 * Script attributes: data-api (default: where the script came from), data-key (a site key),
 * data-timeout (ms, default 1000), data-consent ("required", the default: nothing is sent before the
 * visitor grants consent; "implied": sent until they decline), data-item-url ("/product/{item_id}"),
 * data-customer-id and data-customer-token (made by the site's backend at login), data-currency.
 */
(function () {
  "use strict";
  var VERSION = "1.2.0";
  var script = document.currentScript;
  var attr = function (name, fallback) {
    var value = script && script.getAttribute("data-" + name);
    return value === null || value === undefined || value === "" ? fallback : value;
  };
  var api = attr("api", script && script.src ? new URL(script.src, location.href).origin : location.origin)
    .replace(/\/$/, "");
  var cfg = {
    key: attr("key", null),
    timeout: parseInt(attr("timeout", "1000"), 10) || 1000,
    consentMode: attr("consent", "required"),
    itemUrl: attr("item-url", "/product/{item_id}"),
    customerId: attr("customer-id", null),
    customerToken: attr("customer-token", null),
    currency: attr("currency", "£")
  };
  var CONSENT_COOKIE = "vt_consent";
  var queue = [];
  var flushTimer = null;
  var items = {};
  var firstCall = null; // a new visitor's first request runs alone: it brings the visitor cookie

  function readCookie(name) {
    var found = document.cookie.split("; ").filter(function (c) { return c.indexOf(name + "=") === 0; })[0];
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }

  function gpc() { return navigator.globalPrivacyControl === true; }

  function consent() {
    if (gpc()) return false;
    var stored = readCookie(CONSENT_COOKIE);
    if (stored === "1") return true;
    if (stored === "0") return false;
    return cfg.consentMode === "implied" ? true : null;
  }

  function eventId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "e" + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function headers(json) {
    var h = {};
    if (json) h["content-type"] = "application/json";
    if (cfg.key) h["x-api-key"] = cfg.key;
    return h;
  }

  function request(path, options) {
    var run = function () {
      var controller = new AbortController();
      var timer = setTimeout(function () { controller.abort(); }, cfg.timeout);
      var init = Object.assign({ credentials: "include", signal: controller.signal, headers: headers(false) },
                               options || {});
      return fetch(api + path, init).then(function (response) {
        clearTimeout(timer);
        if (!response.ok) throw new Error("vitrine: " + response.status);
        return response.json();
      }, function (error) { clearTimeout(timer); throw error; });
    };
    if (readCookie("vt_known") === "1") return run();
    if (!firstCall) {
      firstCall = run().then(function (body) {
        document.cookie = "vt_known=1; path=/; max-age=31536000; samesite=lax";
        return body;
      });
      return firstCall;
    }
    return firstCall.then(run, run);
  }

  function withCustomer(event) {
    if (cfg.customerId && cfg.customerToken) {
      event.customer_id = cfg.customerId;
      event.customer_token = cfg.customerToken;
    }
    return event;
  }

  // ------------------------------------------------------------------ events

  function track(type, fields) {
    var event = withCustomer(Object.assign({ event_id: eventId(), type: type }, fields || {}));
    queue.push(event);
    if (consent() === true) scheduleFlush();
  }

  function scheduleFlush() {
    if (flushTimer === null) flushTimer = setTimeout(flush, 150);
  }

  function flush() {
    clearTimeout(flushTimer);
    flushTimer = null;
    if (!queue.length || consent() !== true) return Promise.resolve(null);
    var batch = queue.splice(0, 500);
    return request("/v1/events", { method: "POST", body: JSON.stringify({ events: batch }),
                                   headers: headers(true), keepalive: true }).catch(function () { return null; });
  }

  function flushOnLeave() {
    if (!queue.length || consent() !== true) return;
    var body = JSON.stringify({ events: queue.splice(0, 500) });
    if (cfg.key || !navigator.sendBeacon || !navigator.sendBeacon(api + "/v1/events", body)) {
      fetch(api + "/v1/events", { method: "POST", body: body, headers: headers(true), keepalive: true,
                                  credentials: "include" }).catch(function () { return null; });
    }
  }

  function setConsent(granted) {
    var before = readCookie(CONSENT_COOKIE);
    document.cookie = CONSENT_COOKIE + "=" + (granted ? "1" : "0") + "; path=/; max-age=31536000; samesite=lax";
    hideBanner();
    if (granted) {
      track("consent", { properties: { granted: true } });
      return flush();
    }
    queue.length = 0; // nothing of this page is sent
    if (before === "1" || cfg.consentMode === "implied") {
      // a withdrawal: sent even now, so the server forgets what it knew
      var event = withCustomer({ event_id: eventId(), type: "consent", properties: { granted: false } });
      return request("/v1/events", { method: "POST", body: JSON.stringify(event), headers: headers(true) })
        .catch(function () { return null; });
    }
    return Promise.resolve(null);
  }

  function hideBanner() {
    document.querySelectorAll("[data-vitrine-consent-banner]").forEach(function (el) { el.hidden = true; });
  }

  function initConsent() {
    document.querySelectorAll("[data-vitrine-consent]").forEach(function (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        setConsent(button.getAttribute("data-vitrine-consent") === "grant");
      });
    });
    if (consent() === null) {
      document.querySelectorAll("[data-vitrine-consent-banner]").forEach(function (el) { el.hidden = false; });
    }
  }

  // ------------------------------------------------------------------ rendering

  // Item details (title, price) for strips, kept for the browser session: the next pages ask less.
  function item(id) {
    if (!items[id]) {
      var kept = null;
      try { kept = JSON.parse(sessionStorage.getItem("vt_item:" + id)); } catch (e) { kept = null; }
      items[id] = kept ? Promise.resolve(kept) : request("/v1/items/" + encodeURIComponent(id)).then(function (info) {
        var small = { item_id: info.item_id, title: info.title, price: info.price };
        try { sessionStorage.setItem("vt_item:" + id, JSON.stringify(small)); } catch (e) { /* full or disabled */ }
        return small;
      }).catch(function () { return { item_id: id }; });
    }
    return items[id];
  }

  // The reason codes of GET /v1/recommendations, in words. "{item}": the item named after the colon;
  // "{category}": the category named there.
  var REASONS = {
    because_you_viewed: "Because you looked at {item}",
    because_you_carted: "Because {item} is in your basket",
    because_you_bought: "Because you bought {item}",
    similar_to: "Similar to {item}",
    bought_with: "Often bought with {item}",
    buy_again: "You bought it before",
    viewed_before: "You looked at it before",
    bestseller_in: "A best seller in {category}",
    popular_in: "Popular in {category}",
    trending: "Popular right now",
    popular: "A best seller with our shoppers",
    pinned: "Chosen by our team",
    promoted: "Featured by our team",
    recently_viewed: "You looked at it recently",
    for_you: "Picked for you from what you like",
    session_neighbours: "Shoppers on a visit like yours went on to this",
    sequence: "Often looked at next after what you just saw",
    similar_content: "Much like {item}",
    as_given: "From the shop's own selection",
    declared_interest: "Matches what you told us you like",
    new_arrival: "Just arrived"
  };

  // The API sends the title of the item a reason names (reason_title, with fields=); else it is asked for.
  function why(reason, title) {
    var cut = reason.indexOf(":");
    var code = cut < 0 ? reason : reason.slice(0, cut);
    var ref = cut < 0 ? "" : reason.slice(cut + 1);
    var text = REASONS[code] || "Recommended for you";
    if (text.indexOf("{category}") >= 0) return Promise.resolve(text.replace("{category}", ref.split(".").pop()));
    if (text.indexOf("{item}") < 0) return Promise.resolve(text);
    if (title) return Promise.resolve(text.replace("{item}", title));
    return item(ref).then(function (info) { return text.replace("{item}", info.title || ref); });
  }

  // An item's title and price: those the answer carried (fields=), else asked for.
  function details(entry) {
    return entry.details ? Promise.resolve(entry.details) : item(entry.item_id);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  var tipCount = 0;
  var DETAILS = "title,price"; // what a strip shows of each item, carried in the answer itself

  function renderStrip(target, body, title, blockId) {
    return Promise.all(body.items.map(function (entry) {
      return Promise.all([details(entry), why(entry.reason, entry.reason_title)]);
    })).then(function (rows) {
      var list = el("ul", "vitrine-strip");
      list.setAttribute("data-recommendation-id", body.recommendation_id);
      rows.forEach(function (row, index) {
        var info = row[0], entry = body.items[index];
        var li = el("li", "vitrine-item");
        li.setAttribute("data-item-id", entry.item_id);
        li.setAttribute("data-reason", entry.reason);
        var link = el("a", "vitrine-link");
        link.href = cfg.itemUrl.replace("{item_id}", encodeURIComponent(entry.item_id));
        link.appendChild(el("span", "vitrine-title", info.title || entry.item_id));
        if (typeof info.price === "number") link.appendChild(el("span", "vitrine-price", cfg.currency + info.price.toFixed(2)));
        link.addEventListener("click", function () {
          track("recommendation_click", { item_id: entry.item_id,
                                          properties: { recommendation_id: body.recommendation_id } });
          flushOnLeave();
        });
        li.appendChild(link);
        var tipId = "vitrine-why-" + (++tipCount);
        var button = el("button", "vitrine-why", "Why?");
        button.type = "button";
        button.setAttribute("aria-describedby", tipId);
        button.setAttribute("aria-label", "Why this item?");
        var tip = el("span", "vitrine-tip", row[1]);
        tip.id = tipId;
        tip.setAttribute("role", "tooltip");
        li.appendChild(button);
        li.appendChild(tip);
        list.appendChild(li);
      });
      target.textContent = "";
      if (title) target.appendChild(el("h2", "vitrine-heading", title));
      target.appendChild(list);
      target.setAttribute("data-vitrine-state", "ready");
      seen(target, function () {
        track("block_impression", { properties: { block_id: blockId, recommendation_id: body.recommendation_id },
                                    items: body.items.map(function (e) { return { item_id: e.item_id }; }) });
      });
    });
  }

  function fail(target) {
    target.setAttribute("data-vitrine-state", "unavailable");
    target.hidden = true;
  }

  // One request for every strip and block of the page (POST /v1/page), sent as text/plain so that
  // another origin needs no CORS preflight for it.
  function render(targets) {
    var strips = targets.filter(function (t) { return t.hasAttribute("data-vitrine-placement"); });
    var slots = targets.filter(function (t) { return t.hasAttribute("data-vitrine-block"); });
    if (!strips.length && !slots.length) return Promise.resolve(null);
    var ask = { fields: DETAILS, placements: strips.map(function (t) {
      var category = t.getAttribute("data-vitrine-category");
      return { placement: t.getAttribute("data-vitrine-placement"), item_id: t.getAttribute("data-vitrine-item") || undefined,
               category: category ? [category] : undefined, n: parseInt(t.getAttribute("data-vitrine-n") || "8", 10) };
    }), blocks: slots.map(function (t) {
      return { slot: t.getAttribute("data-vitrine-block"), item_id: t.getAttribute("data-vitrine-item") || undefined };
    }) };
    if (cfg.customerId && cfg.customerToken) {
      ask.customer_id = cfg.customerId;
      ask.customer_token = cfg.customerToken;
    }
    var h = headers(false);
    h["content-type"] = "text/plain";
    return request("/v1/page", { method: "POST", body: JSON.stringify(ask), headers: h }).then(function (answer) {
      return Promise.all(strips.map(function (t, i) { return placement(t, answer.placements[i]); })
        .concat(slots.map(function (t, i) { return block(t, answer.blocks[i]); })));
    }).catch(function () { targets.forEach(fail); });
  }

  function placement(target, body) {
    var name = target.getAttribute("data-vitrine-placement");
    if (!body.items.length) return fail(target);
    return renderStrip(target, body, target.getAttribute("data-vitrine-title"), "reco:" + name)
      .then(function () { mark("strip:" + name); }, function () { fail(target); });
  }

  function block(target, body) {
    var slot = target.getAttribute("data-vitrine-block");
    var b = body.block;
    if (!b) return fail(target);
    var box = el("section", "vitrine-block vitrine-" + (b.kind || "banner"));
    box.setAttribute("data-block-id", b.id);
    var heading = el("h2", "vitrine-block-title");
    var text = el("p", "vitrine-block-body");
    if (b.format === "html") { // values are escaped by the server; the markup is the merchandiser's
      heading.innerHTML = b.title || "";
      text.innerHTML = b.body || "";
    } else {
      heading.textContent = b.title || "";
      text.textContent = b.body || "";
    }
    box.appendChild(heading);
    if (b.body) box.appendChild(text);
    if (b.link) {
      var cta = el("a", "vitrine-cta", b.cta || "See more");
      cta.href = b.link;
      cta.addEventListener("click", function () {
        track("block_click", { properties: { block_id: b.id } });
        flushOnLeave();
      });
      box.appendChild(cta);
    }
    target.textContent = "";
    target.appendChild(box);
    target.setAttribute("data-vitrine-state", "ready");
    seen(box, function () { track("block_impression", { properties: { block_id: b.id } }); });
    var done = Promise.resolve(null);
    if (b.recommendations && b.recommendations.items && b.recommendations.items.length) {
      var strip = el("div", "vitrine-block-strip");
      box.appendChild(strip);
      done = renderStrip(strip, b.recommendations, null, "reco:" + (b.recommendations.placement || b.id));
    }
    return done.then(function () { mark("block:" + slot); }, function () { fail(target); });
  }

  function seen(node, callback) {
    if (!("IntersectionObserver" in window)) return callback();
    var observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) {
        observer.disconnect();
        callback();
      }
    }, { threshold: 0.5 });
    observer.observe(node);
  }

  function mark(name) {
    if (window.performance && performance.mark) performance.mark("vitrine:" + name);
  }

  // ------------------------------------------------------------------ page

  function pageEvents() {
    var page = document.querySelector("[data-vitrine-page]");
    if (!page) return;
    var kind = page.getAttribute("data-vitrine-page");
    var id = page.getAttribute("data-vitrine-item");
    if (kind === "product" && id) track("product_view", { item_id: id });
    else track("page_view", { properties: { page: kind, category: page.getAttribute("data-vitrine-category") || undefined } });
    if (cfg.customerId && cfg.customerToken && readCookie("vt_login") !== cfg.customerId) {
      track("login", {});
      document.cookie = "vt_login=" + encodeURIComponent(cfg.customerId) + "; path=/; samesite=lax";
    }
  }

  function clicks() {
    document.addEventListener("click", function (e) {
      var node = e.target.closest && e.target.closest("[data-vitrine-track]");
      if (!node) return;
      var fields = {};
      var id = node.getAttribute("data-vitrine-item");
      if (id) fields.item_id = id;
      track(node.getAttribute("data-vitrine-track"), fields);
      flushOnLeave();
    });
  }

  function marked() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-vitrine-placement], [data-vitrine-block]"));
  }

  // The page's one request leaves first: the rest of the page's set-up runs while it travels.
  function start() {
    render(marked());
    initConsent();
    pageEvents();
    clicks();
    addEventListener("pagehide", flushOnLeave);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") flushOnLeave();
    });
  }

  window.Vitrine = { version: VERSION, track: track, flush: flush, consent: setConsent,
                     hasConsent: consent, refresh: function () {
                       return render(marked().filter(function (t) { return t.hasAttribute("data-vitrine-placement"); }));
                     } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
