// The browser agent: log in with the phone's credentials, ring with the screen pop,
// answer over WebRTC (G.711 µ-law only), mute, hang up. Talks to the hotline's WebRTC
// gateway over one WebSocket (JSON messages); the protocol is described in
// hotline/web/agent_protocol.py. Plain JavaScript, no build step, no dependencies.
// Screen-pop values are shown with textContent only (never as HTML) and never logged.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), message: $("message"), login: $("login"), username: $("username"),
    password: $("password"), loginButton: $("login-button"), desk: $("desk"),
    agentName: $("agent-name"), logout: $("logout-button"), call: $("call"),
    callTitle: $("call-title"), offer: $("offer"), pop: $("pop"),
    variables: $("variables"), answer: $("answer-button"), reject: $("reject-button"),
    talk: $("talk"), talkState: $("talk-state"), mute: $("mute-button"),
    hangup: $("hangup-button"), idle: $("idle"), remote: $("remote"),
  };
  const ICE_GATHERING_TIMEOUT_MS = 3000;
  const POP_LABELS = [
    ["queue", "Queue"], ["waited", "Waited"], ["caller", "Caller"], ["priority", "Priority"],
    ["display", "From"], ["callback", "Callback"], ["call_ref", "Reference"],
  ];

  let ws = null;
  let microphone = null; // MediaStream from getUserMedia, kept while logged in
  let call = null; // {id, pc, muted}
  let ringer = null; // {context, timer}

  // -- display -------------------------------------------------------------------------

  function setStatus(text, kind) {
    ui.status.textContent = text;
    ui.status.className = "status" + (kind ? " " + kind : "");
  }

  function say(text, info) {
    ui.message.textContent = text || "";
    ui.message.className = "message" + (info ? " info" : "");
  }

  function show(view) {
    ui.login.hidden = view !== "login";
    ui.desk.hidden = view === "login";
    ui.call.hidden = view !== "ringing" && view !== "talking";
    ui.call.classList.toggle("ringing", view === "ringing");
    ui.callTitle.textContent = view === "ringing" ? "Incoming call" : "On call";
    ui.offer.hidden = view !== "ringing";
    ui.talk.hidden = view !== "talking";
    ui.idle.hidden = view !== "idle";
  }

  function fill(list, pairs) {
    list.replaceChildren();
    for (const [name, value] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
  }

  function waited(seconds) {
    if (typeof seconds !== "number") return "";
    const m = Math.floor(seconds / 60);
    return m ? `${m} min ${seconds % 60} s` : `${seconds} s`;
  }

  // -- ringing (a tone made here: no audio file to fetch) ---------------------------

  function startRinging() {
    stopRinging();
    const context = new AudioContext();
    const burst = () => {
      const gain = context.createGain();
      gain.gain.value = 0.08;
      gain.connect(context.destination);
      for (const freq of [440, 480]) {
        const osc = context.createOscillator();
        osc.frequency.value = freq;
        osc.connect(gain);
        osc.start();
        osc.stop(context.currentTime + 1.5);
      }
    };
    burst();
    ringer = { context, timer: setInterval(burst, 4000) };
  }

  function stopRinging() {
    if (!ringer) return;
    clearInterval(ringer.timer);
    ringer.context.close();
    ringer = null;
  }

  // -- the WebSocket ------------------------------------------------------------------

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function connect() {
    return new Promise((resolve, reject) => {
      if (ws && ws.readyState === WebSocket.OPEN) return resolve();
      const url = new URL("ws", window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(url);
      socket.onopen = () => { ws = socket; resolve(); };
      socket.onerror = () => reject(new Error("cannot reach the hotline"));
      socket.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch { return; }
        handle(message);
      };
      socket.onclose = () => {
        if (ws !== socket) return;
        ws = null;
        endCall();
        releaseMicrophone();
        setStatus("Disconnected", "warn");
        say("The connection to the hotline was lost: log in again.");
        show("login");
        ui.loginButton.disabled = false;
      };
    });
  }

  function handle(message) {
    switch (message.type) {
      case "registered":
        ui.agentName.textContent = message.username;
        setStatus("Logged in: waiting for calls", "ok");
        say("");
        show(call ? "talking" : "idle");
        break;
      case "login_failed":
        releaseMicrophone();
        setStatus("Logged out");
        say("Login failed: " + message.reason);
        show("login");
        ui.loginButton.disabled = false;
        break;
      case "registration_failed":
        setStatus(`Registration problem: retrying in ${message.retry_in} s`, "warn");
        break;
      case "logged_out":
        endCall();
        releaseMicrophone();
        setStatus("Logged out");
        say(message.reason && message.reason !== "logged out" ? message.reason : "", true);
        show("login");
        ui.loginButton.disabled = false;
        break;
      case "ringing":
        ring(message);
        break;
      case "answer":
        if (call && call.id === message.call && call.pc) {
          call.pc.setRemoteDescription({ type: "answer", sdp: message.sdp })
            .catch((error) => { say("Audio setup failed: " + error.message); hangUp(); });
        }
        break;
      case "connected":
        if (call && call.id === message.call) {
          ui.talkState.textContent = "Connected";
          setStatus("On a call", "ok");
        }
        break;
      case "cancelled":
        if (call && call.id === message.call) {
          endCall();
          say("The call was withdrawn (" + message.reason + ").", true);
        }
        break;
      case "ended":
        if (call && call.id === message.call) {
          endCall();
          say("Call ended: " + message.reason + ".", true);
        }
        break;
      case "error":
        say(message.message);
        break;
      default:
        break;
    }
  }

  // -- calls --------------------------------------------------------------------------

  function ring(message) {
    call = { id: message.call, pc: null, muted: false };
    const pairs = [];
    for (const [key, label] of POP_LABELS) {
      const value = key === "waited" ? waited(message.waited) : message[key];
      if (value !== null && value !== undefined && value !== "") pairs.push([label, String(value)]);
    }
    for (const [key, value] of Object.entries(message.context || {})) pairs.push([key, value]);
    fill(ui.pop, pairs);
    fill(ui.variables, message.variables || []);
    ui.answer.disabled = false;
    ui.reject.disabled = false;
    ui.talkState.textContent = "";
    setStatus("Ringing", "warn");
    say("");
    show("ringing");
    startRinging();
  }

  function waitForCandidates(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  async function answer() {
    if (!call || call.pc) return;
    stopRinging();
    ui.answer.disabled = true;
    ui.reject.disabled = true;
    const current = call;
    try {
      const pc = new RTCPeerConnection({ iceServers: [] });
      current.pc = pc;
      const transceiver = pc.addTransceiver(microphone.getAudioTracks()[0],
        { direction: "sendrecv", streams: [microphone] });
      // The gateway speaks G.711 µ-law only: offer nothing else.
      if (transceiver.setCodecPreferences && window.RTCRtpReceiver.getCapabilities) {
        const pcmu = RTCRtpReceiver.getCapabilities("audio").codecs
          .filter((c) => c.mimeType.toLowerCase() === "audio/pcmu");
        if (pcmu.length) transceiver.setCodecPreferences(pcmu);
      }
      pc.ontrack = (event) => {
        ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" && call === current) {
          say("The audio connection failed.");
          hangUp();
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      await waitForCandidates(pc);
      if (call !== current) { pc.close(); return; }
      send({ type: "accept", call: current.id, sdp: pc.localDescription.sdp });
      ui.talkState.textContent = "Connecting…";
      setStatus("Answering", "warn");
      show("talking");
    } catch (error) {
      say("Cannot answer: " + error.message);
      send({ type: "reject", call: current.id });
      endCall();
    }
  }

  function reject() {
    if (!call) return;
    send({ type: "reject", call: call.id });
    endCall();
  }

  function hangUp() {
    if (!call) return;
    send({ type: "hangup", call: call.id });
    endCall();
  }

  function toggleMute() {
    if (!call) return;
    call.muted = !call.muted;
    for (const track of microphone ? microphone.getAudioTracks() : []) track.enabled = !call.muted;
    ui.mute.setAttribute("aria-pressed", String(call.muted));
    ui.mute.textContent = call.muted ? "Unmute" : "Mute";
    send({ type: "mute", call: call.id, muted: call.muted });
  }

  function endCall() {
    stopRinging();
    if (call && call.pc) call.pc.close();
    call = null;
    ui.remote.srcObject = null;
    for (const track of microphone ? microphone.getAudioTracks() : []) track.enabled = true;
    ui.mute.setAttribute("aria-pressed", "false");
    ui.mute.textContent = "Mute";
    if (!ui.desk.hidden) {
      setStatus("Logged in: waiting for calls", "ok");
      show("idle");
    }
  }

  function releaseMicrophone() {
    for (const track of microphone ? microphone.getTracks() : []) track.stop();
    microphone = null;
  }

  // -- log in / out ---------------------------------------------------------------------

  async function logIn(event) {
    event.preventDefault();
    const username = ui.username.value.trim();
    const password = ui.password.value;
    ui.password.value = ""; // the password is sent once and not kept by this page
    if (!username || !password) return;
    ui.loginButton.disabled = true;
    say("");
    try {
      if (!microphone) {
        microphone = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
      }
      await connect();
      setStatus("Logging in…");
      send({ type: "login", username, password });
    } catch (error) {
      releaseMicrophone();
      say((error.name === "NotAllowedError" ? "The microphone is needed: " : "") + error.message);
      ui.loginButton.disabled = false;
    }
  }

  ui.login.addEventListener("submit", logIn);
  ui.logout.addEventListener("click", () => send({ type: "logout" }));
  ui.answer.addEventListener("click", answer);
  ui.reject.addEventListener("click", reject);
  ui.hangup.addEventListener("click", hangUp);
  ui.mute.addEventListener("click", toggleMute);
  window.addEventListener("beforeunload", () => { if (ws) ws.close(); });
  show("login");
})();
