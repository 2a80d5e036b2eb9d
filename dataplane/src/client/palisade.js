// Palisade client instrumentation: translates the app's URLs into proxy
// URLs at the moment the page's scripts use them, so data the app hands
// out can stay byte for byte what the app wrote. Prepended by the proxy:
// `const PALISADE = { suffix, domains }` (the proxy suffix, the app
// domains, lower case).
(function (config) {
  'use strict';
  const root = typeof window !== 'undefined' ? window : self;
  if (root.__palisade) return;
  const suffix = config.suffix;
  const domains = config.domains;

  function isAppHost(host) {
    host = String(host).toLowerCase().replace(/\.$/, '');
    if (host === suffix || host.endsWith('.' + suffix)) return false;
    return domains.some((d) => host === d || host.endsWith('.' + d));
  }

  function base() {
    return typeof document !== 'undefined' ? document.baseURI : self.location.href;
  }

  // An app URL (absolute or protocol-relative) as the proxy URL; anything
  // else unchanged, so relative and foreign URLs keep their exact text.
  function translate(value) {
    if (value === null || value === undefined) return value;
    const text = String(value);
    if (!/^\s*([a-z][a-z0-9+.-]*:)?\/\//i.test(text)) return value;
    let url;
    try {
      url = new URL(text.trim(), base());
    } catch (e) {
      return value;
    }
    if (!/^(https?|wss?):$/.test(url.protocol) || !isAppHost(url.hostname)) return value;
    url.hostname = url.hostname.replace(/\.$/, '') + '.' + suffix;
    return url.href;
  }

  // App hosts after `//` inside markup or CSS a script builds.
  function translateText(text) {
    if (typeof text !== 'string' || text.indexOf('//') < 0) return text;
    return text.replace(/\/\/([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?=[:/"'?#\s>)]|$)/gi, (m, host) =>
      isAppHost(host) ? '//' + host + '.' + suffix : m);
  }

  function translateSrcset(value) {
    return String(value)
      .split(',')
      .map((part) => {
        const m = part.match(/^(\s*)(\S+)(.*)$/);
        return m ? m[1] + translate(m[2]) + m[3] : part;
      })
      .join(',');
  }

  function wrapConstructor(name, translateArgs) {
    const Original = root[name];
    if (typeof Original !== 'function') return;
    const Wrapped = function (...args) {
      return new Original(...translateArgs(args));
    };
    Wrapped.prototype = Original.prototype;
    Object.setPrototypeOf(Wrapped, Original);
    Object.defineProperty(Wrapped, 'name', { value: name });
    root[name] = Wrapped;
  }

  function wrapMethod(owner, name, translateArgs) {
    if (!owner || typeof owner[name] !== 'function') return;
    const original = owner[name];
    owner[name] = function (...args) {
      return original.apply(this, translateArgs(args));
    };
  }

  // Replaces the setter of `property` on `proto` with one that passes the
  // value through `transform` first; the getter stays.
  function wrapSetter(proto, property, transform) {
    const desc = proto && Object.getOwnPropertyDescriptor(proto, property);
    if (!desc || !desc.set) return;
    Object.defineProperty(proto, property, {
      configurable: true,
      enumerable: desc.enumerable,
      get: desc.get,
      set(value) { desc.set.call(this, transform(value)); },
    });
  }

  const firstUrl = (args) => {
    if (args.length) args[0] = translate(args[0]);
    return args;
  };

  // Requests: fetch, Request, XHR, WebSocket, EventSource, beacons.
  if (typeof root.fetch === 'function') {
    const fetchOriginal = root.fetch;
    root.fetch = function (input, init) {
      if (typeof Request !== 'undefined' && input instanceof Request) {
        const url = translate(input.url);
        if (url !== input.url) input = new Request(url, input);
      } else {
        input = translate(input);
      }
      return fetchOriginal.call(this, input, init);
    };
  }
  wrapConstructor('Request', (args) => {
    if (typeof args[0] === 'string' || args[0] instanceof URL) args[0] = translate(args[0]);
    return args;
  });
  if (root.XMLHttpRequest) {
    wrapMethod(root.XMLHttpRequest.prototype, 'open', (args) => {
      if (args.length > 1) args[1] = translate(args[1]);
      return args;
    });
  }
  wrapConstructor('WebSocket', firstUrl);
  wrapConstructor('EventSource', firstUrl);
  wrapConstructor('Worker', firstUrl);
  wrapConstructor('SharedWorker', firstUrl);
  if (root.navigator) wrapMethod(root.navigator, 'sendBeacon', firstUrl);
  if (typeof importScripts === 'function') {
    root.importScripts = ((original) => function (...urls) {
      return original.apply(this, urls.map(translate));
    })(root.importScripts);
  }

  // Service workers would run the app's code for this origin without
  // this script: registering one is refused.
  if (root.navigator && root.navigator.serviceWorker) {
    try {
      root.navigator.serviceWorker.register = () =>
        Promise.reject(new DOMException('Service workers are not available through Palisade', 'SecurityError'));
    } catch (e) { /* read-only in some contexts */ }
  }

  if (typeof document === 'undefined') {
    root.__palisade = { translate };
    return;
  }

  // Navigations a script starts.
  wrapMethod(window, 'open', firstUrl);
  wrapMethod(History.prototype, 'pushState', (args) => {
    if (args.length > 2) args[2] = translate(args[2]);
    return args;
  });
  wrapMethod(History.prototype, 'replaceState', (args) => {
    if (args.length > 2) args[2] = translate(args[2]);
    return args;
  });
  if (window.navigation && typeof window.navigation.addEventListener === 'function') {
    window.navigation.addEventListener('navigate', (event) => {
      const to = event.destination && event.destination.url;
      const proxied = translate(to);
      if (to && proxied !== to && event.cancelable) {
        event.preventDefault();
        window.location.assign(proxied);
      }
    });
  }
  wrapMethod(window, 'postMessage', (args) => {
    if (args.length > 1 && typeof args[1] === 'string' && args[1] !== '*' && args[1] !== '/') {
      args[1] = translate(args[1]).replace(/\/$/, '');
    }
    return args;
  });

  // URL properties and attributes of elements.
  const urlProperties = [
    ['HTMLAnchorElement', 'href'], ['HTMLAreaElement', 'href'], ['HTMLLinkElement', 'href'],
    ['HTMLBaseElement', 'href'], ['HTMLImageElement', 'src'], ['HTMLScriptElement', 'src'],
    ['HTMLIFrameElement', 'src'], ['HTMLFrameElement', 'src'], ['HTMLEmbedElement', 'src'],
    ['HTMLSourceElement', 'src'], ['HTMLMediaElement', 'src'], ['HTMLTrackElement', 'src'],
    ['HTMLInputElement', 'src'], ['HTMLFormElement', 'action'], ['HTMLObjectElement', 'data'],
    ['HTMLVideoElement', 'poster'], ['HTMLInputElement', 'formAction'],
    ['HTMLButtonElement', 'formAction'],
  ];
  const prototypeOf = (type) => window[type] && window[type].prototype;
  for (const [type, property] of urlProperties) {
    wrapSetter(prototypeOf(type), property, translate);
  }
  for (const type of ['HTMLImageElement', 'HTMLSourceElement']) {
    wrapSetter(prototypeOf(type), 'srcset', translateSrcset);
  }
  const urlAttributes = new Set(['href', 'src', 'action', 'formaction', 'data', 'poster', 'xlink:href']);
  wrapMethod(Element.prototype, 'setAttribute', (args) => {
    const name = String(args[0]).toLowerCase();
    if (urlAttributes.has(name)) args[1] = translate(args[1]);
    else if (name === 'srcset') args[1] = translateSrcset(args[1]);
    else if (name === 'style') args[1] = translateText(args[1]);
    return args;
  });
  wrapMethod(Element.prototype, 'setAttributeNS', (args) => {
    const name = String(args[1]).toLowerCase();
    if (urlAttributes.has(name) || name === 'href') args[2] = translate(args[2]);
    return args;
  });

  // Markup a script hands to the parser.
  wrapSetter(Element.prototype, 'innerHTML', translateText);
  wrapSetter(Element.prototype, 'outerHTML', translateText);
  wrapMethod(Element.prototype, 'insertAdjacentHTML', (args) => {
    if (args.length > 1) args[1] = translateText(args[1]);
    return args;
  });
  wrapMethod(Document.prototype, 'write', (args) => args.map(translateText));
  wrapMethod(Document.prototype, 'writeln', (args) => args.map(translateText));

  // Cookies a script sets for the app's domain, and document.domain.
  wrapSetter(Document.prototype, 'cookie', (value) =>
    String(value).replace(/(;\s*domain\s*=\s*\.?)([^;]+)/i, (m, lead, host) =>
      isAppHost(host.trim()) ? lead + host.trim() + '.' + suffix : m));
  wrapSetter(Document.prototype, 'domain', (value) =>
    isAppHost(value) ? value + '.' + suffix : value);

  // Browser activities a session policy controls for this user (set by
  // the proxy on this script's tag): stopped when blocked, reported
  // either way. Client-side by nature: a determined user can get around
  // it.
  const script = document.currentScript;
  const controls = script && script.dataset.controls ? JSON.parse(script.dataset.controls) : {};
  const seen = [];
  function report(activity) {
    seen.push(activity);
    // A beacon outlives the page (the user may leave right after).
    try {
      const body = new Blob([JSON.stringify({ activity })], { type: 'application/json' });
      navigator.sendBeacon('/.palisade/activity', body);
    } catch (e) { /* reporting is best effort */ }
  }
  function notify(message) {
    if (!message || !document.body) return;
    let box = document.getElementById('palisade-notice');
    if (!box) {
      box = document.createElement('div');
      box.id = 'palisade-notice';
      box.setAttribute('role', 'alert');
      box.style.cssText = 'position:fixed;z-index:2147483647;left:1em;bottom:1em;padding:.6em 1em;background:#222;color:#fff;font:14px sans-serif;border-radius:4px';
      document.body.appendChild(box);
    }
    box.textContent = message;
  }
  for (const activity of ['copy', 'cut', 'paste']) {
    const rule = controls[activity];
    if (!rule) continue;
    window.addEventListener(activity, (event) => {
      report(activity);
      if (rule.block) {
        event.preventDefault();
        event.stopImmediatePropagation();
        notify(rule.message || activity + ' is not allowed here.');
      }
    }, true);
  }
  if (controls.print) {
    const rule = controls.print;
    const print = window.print;
    window.print = function () {
      report('print');
      if (rule.block) {
        notify(rule.message || 'Printing is not allowed here.');
        return undefined;
      }
      return print.apply(this, arguments);
    };
    window.addEventListener('keydown', (event) => {
      if ((event.ctrlKey || event.metaKey) && (event.key === 'p' || event.key === 'P')) {
        event.preventDefault();
        window.print();
      }
    }, true);
    if (rule.block) {
      // What the browser's own print command would print.
      const style = document.createElement('style');
      style.textContent = '@media print { body { display: none !important; } }';
      (document.head || document.documentElement).appendChild(style);
    }
  }

  root.__palisade = { translate, translateText, controls, seen };
})(PALISADE);
