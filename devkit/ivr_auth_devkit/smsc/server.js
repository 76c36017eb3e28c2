'use strict';
// The development kit's test SMSC: the npm `smpp` package (0.5.1) as an SMPP
// 3.4 server on loopback, an independent implementation to send to. It
// records every submit_sm / data_sm as one JSON line, answers with a fresh
// message_id, sends delivery receipts as the destination's rule says, and is
// steered over a small HTTP control port (ivr_auth_devkit.smsc drives it).
//
//   node server.js SMPP_PORT CONTROL_PORT SYSTEM_ID PASSWORD RECORD_FILE
//
// A port of 0 picks a free one; both are printed once listening, as
// `listening smpp=<port> control=<port> pid=<pid>`. PASSWORD "-" reads it from the
// environment (SMSC_PASSWORD), so that it is not in the process list.

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const smpp = require('smpp');

const HOST = '127.0.0.1';

// The library decodes short_message and message_payload by its own guesses
// and turns times into Dates; the records want the octets and strings as sent.
for (const name of ['submit_sm', 'data_sm', 'deliver_sm']) {
  const params = smpp.commands[name].params || {};
  for (const key of ['short_message', 'validity_period', 'schedule_delivery_time']) {
    if (params[key]) delete params[key].filter;
  }
}
delete smpp.tlvs.message_payload.filter;

// GSM 03.38 default alphabet (one septet per octet, as SMPP carries it) and
// the extension table reached through 0x1B.
const GSM_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXTENSION = {
  0x0a: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2f: '\\', 0x3c: '[', 0x3d: '~', 0x3e: ']', 0x40: '|', 0x65: '€',
};

// message_state TLV values (SMPP 3.4, 5.2.28) for the receipt's stat.
const MESSAGE_STATE = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };
const RECEIPTS = ['DELIVRD', 'UNDELIV', 'EXPIRED', 'REJECTD', 'none'];
const DEFAULT_RULE = { submit_status: 0, receipt: 'DELIVRD', receipt_delay_ms: 100 };
const BIND_TYPES = { bind_transceiver: 'transceiver', bind_transmitter: 'transmitter', bind_receiver: 'receiver' };

function decodeGsm(buf) {
  let out = '';
  for (let i = 0; i < buf.length; i++) {
    const octet = buf[i] & 0x7f;
    if (octet === 0x1b && i + 1 < buf.length) {
      i += 1;
      out += GSM_EXTENSION[buf[i] & 0x7f] || ' ';
    } else {
      out += GSM_BASIC[octet];
    }
  }
  return out;
}

function decodeUcs2(buf) {
  const even = buf.length - (buf.length % 2);
  const swapped = Buffer.alloc(even);
  for (let i = 0; i < even; i += 2) {
    swapped[i] = buf[i + 1];
    swapped[i + 1] = buf[i];
  }
  // UTF-16LE after the swap: surrogate pairs (emoji) come out whole.
  return swapped.toString('utf16le');
}

function decodeText(dataCoding, buf) {
  switch (dataCoding) {
    case 0: return decodeGsm(buf);
    case 1: return buf.toString('ascii');
    case 3: return buf.toString('latin1');
    case 8: return decodeUcs2(buf);
    default: return null;
  }
}

// The user data header's concatenation element: IEI 0x00 (8-bit reference)
// or 0x08 (16-bit reference). Returns the header's length too.
function parseUdh(buf) {
  if (!buf.length) return { length: 0, concat: null, hex: '' };
  const length = buf[0] + 1;
  let concat = null;
  let i = 1;
  while (i + 1 < length && i + 1 < buf.length) {
    const iei = buf[i];
    const len = buf[i + 1];
    const data = buf.slice(i + 2, i + 2 + len);
    if (iei === 0x00 && len === 3) {
      concat = { iei: 0, reference: data[0], total: data[1], sequence: data[2] };
    } else if (iei === 0x08 && len === 4) {
      concat = { iei: 8, reference: data.readUInt16BE(0), total: data[2], sequence: data[3] };
    }
    i += 2 + len;
  }
  return { length, concat, hex: buf.slice(0, length).toString('hex') };
}

function toBuffer(value) {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value, 'latin1');
  return Buffer.alloc(0);
}

function stamp(date) {
  const two = (n) => String(n).padStart(2, '0');
  return (
    two(date.getUTCFullYear() % 100) + two(date.getUTCMonth() + 1) + two(date.getUTCDate()) +
    two(date.getUTCHours()) + two(date.getUTCMinutes())
  );
}

function main(argv) {
  if (argv.length !== 5) {
    process.stderr.write('usage: node server.js SMPP_PORT CONTROL_PORT SYSTEM_ID PASSWORD RECORD_FILE\n');
    process.exit(2);
  }
  const [smppPort, controlPort, systemId, passwordArg, recordFile] = argv;
  const password = passwordArg === '-' ? process.env.SMSC_PASSWORD || '' : passwordArg;
  const state = {
    records: [],
    receipts: [],
    rules: {},
    refuseUntil: 0,
    refused: [],
    nextSession: 1,
    sessions: new Map(), // id -> {session, info}
    pending: [], // receipts waiting for a receiver bind of their system_id
    generation: 0, // bumped by a reset: receipts scheduled before it are not sent
  };
  fs.writeFileSync(recordFile, '');

  function ruleFor(destination) {
    const digits = String(destination || '');
    let best = null;
    let bestLength = -1;
    for (const [suffix, rule] of Object.entries(state.rules)) {
      if (suffix.length > bestLength && digits.endsWith(suffix)) {
        best = rule;
        bestLength = suffix.length;
      }
    }
    return { ...DEFAULT_RULE, ...(best || {}) };
  }

  function receiverFor(entry) {
    // The bind the message came on when it can take deliver_sm, else another
    // receiver or transceiver bind of the same system_id (one that refused
    // this receipt before only when there is no other).
    const takes = (s) => s.info.bound && s.info.bind_type !== 'transmitter' && s.info.system_id === entry.systemId;
    if (entry.origin && takes(entry.origin) && entry.origin.info.id !== entry.avoid) {
      return entry.origin;
    }
    let fallback = null;
    for (const candidate of state.sessions.values()) {
      if (!takes(candidate)) continue;
      if (candidate.info.id !== entry.avoid) return candidate;
      fallback = candidate;
    }
    return fallback;
  }

  // A receipt the ESME did not take (an error in deliver_sm_resp, or its
  // connection gone before the answer) is offered again, as an SMSC retries.
  const RECEIPT_RETRY_MS = 1000;
  const RECEIPT_ATTEMPTS = 30;
  function retryReceipt(entry, refusedBy) {
    if (entry.attempts >= RECEIPT_ATTEMPTS) return;
    const generation = state.generation;
    setTimeout(() => {
      if (generation === state.generation) deliverReceipt({ ...entry, origin: null, avoid: refusedBy });
    }, RECEIPT_RETRY_MS);
  }

  function deliverReceipt(entry) {
    const target = receiverFor(entry);
    if (!target) {
      state.pending.push(entry);
      return;
    }
    const pdu = {
      service_type: '',
      source_addr_ton: entry.record.dest_addr_ton,
      source_addr_npi: entry.record.dest_addr_npi,
      source_addr: entry.record.destination_addr,
      dest_addr_ton: entry.record.source_addr_ton,
      dest_addr_npi: entry.record.source_addr_npi,
      destination_addr: entry.record.source_addr,
      esm_class: 0x04,
      data_coding: 0,
      short_message: Buffer.from(entry.text, 'ascii'),
      receipted_message_id: entry.record.message_id,
      message_state: MESSAGE_STATE[entry.stat],
    };
    const sent = {
      time: new Date().toISOString(),
      session: target.info.id,
      message_id: entry.record.message_id,
      stat: entry.stat,
      text: entry.text,
      response_status: null,
    };
    state.receipts.push(sent);
    const attempt = { ...entry, attempts: (entry.attempts || 0) + 1 };
    target.outstanding.add(attempt);
    target.session.deliver_sm(pdu, (resp) => {
      target.outstanding.delete(attempt);
      sent.response_status = resp.command_status;
      if (resp.command_status !== 0) retryReceipt(attempt, target.info.id);
    });
  }

  function scheduleReceipt(origin, record, rule) {
    const submitted = new Date(record.time);
    const stat = rule.receipt;
    const delay = Math.max(0, Number(rule.receipt_delay_ms) || 0);
    const generation = state.generation;
    setTimeout(() => {
      if (generation !== state.generation) return;
      const done = new Date();
      const delivered = stat === 'DELIVRD' ? '001' : '000';
      const err = stat === 'DELIVRD' ? '000' : stat === 'EXPIRED' ? '000' : '001';
      const text = (record.text || '').replace(/[^\x20-\x7e]/g, '.').slice(0, 20);
      const body =
        `id:${record.message_id} sub:001 dlvrd:${delivered} submit date:${stamp(submitted)} ` +
        `done date:${stamp(done)} stat:${stat} err:${err} text:${text}`;
      deliverReceipt({ origin, systemId: record.system_id, record, stat, text: body });
    }, delay);
  }

  function record(entry) {
    state.records.push(entry);
    fs.appendFileSync(recordFile, JSON.stringify(entry) + '\n');
  }

  function onSubmit(own, pdu) {
    const { session, info } = own;
    if (!info.bound || info.bind_type === 'receiver') {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    const shortMessage = toBuffer(pdu.short_message);
    const payload = pdu.message_payload === undefined ? null : toBuffer(pdu.message_payload);
    const body = shortMessage.length || payload === null ? shortMessage : payload;
    const udhi = (pdu.esm_class & 0x40) !== 0;
    const udh = udhi ? parseUdh(body) : { length: 0, concat: null, hex: '' };
    const rule = ruleFor(pdu.destination_addr);
    const status = Number(rule.submit_status) || 0;
    const messageId = status === 0 ? crypto.randomBytes(8).toString('hex') : null;
    const entry = {
      time: new Date().toISOString(),
      command: pdu.command,
      session: info.id,
      system_id: info.system_id,
      service_type: pdu.service_type || '',
      source_addr: pdu.source_addr || '',
      source_addr_ton: pdu.source_addr_ton || 0,
      source_addr_npi: pdu.source_addr_npi || 0,
      destination_addr: pdu.destination_addr || '',
      dest_addr_ton: pdu.dest_addr_ton || 0,
      dest_addr_npi: pdu.dest_addr_npi || 0,
      data_coding: pdu.data_coding || 0,
      esm_class: pdu.esm_class || 0,
      registered_delivery: pdu.registered_delivery || 0,
      validity_period: typeof pdu.validity_period === 'string' ? pdu.validity_period : '',
      short_message_hex: shortMessage.toString('hex'),
      message_payload_hex: payload === null ? null : payload.toString('hex'),
      udh: udh.concat,
      udh_hex: udh.hex || null,
      sar:
        pdu.sar_msg_ref_num === undefined
          ? null
          : { reference: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, sequence: pdu.sar_segment_seqnum },
      text: decodeText(pdu.data_coding || 0, body.slice(udh.length)),
      message_id: messageId,
      command_status: status,
    };
    record(entry);
    if (status !== 0) {
      session.send(pdu.response({ command_status: status }));
      return;
    }
    session.send(pdu.response({ message_id: messageId }));
    // Bits 0-1 of registered_delivery: 1 asks for every outcome, 2 for failures only.
    const asked = pdu.registered_delivery & 0x03;
    if (rule.receipt !== 'none' && (asked === 1 || (asked === 2 && rule.receipt !== 'DELIVRD'))) {
      scheduleReceipt(own, entry, rule);
    }
  }

  function onSession(session) {
    const socket = session.socket;
    if (Date.now() < state.refuseUntil) {
      state.refused.push(new Date().toISOString());
      socket.destroy();
      return;
    }
    const info = {
      id: state.nextSession++,
      peer: `${socket.remoteAddress}:${socket.remotePort}`,
      connected_at: new Date().toISOString(),
      system_id: null,
      bind_type: null,
      bound: false,
      enquire_links: 0,
      submits: 0,
    };
    const own = { session, info, outstanding: new Set() };
    state.sessions.set(info.id, own);
    session.on('error', () => {}); // a peer that vanishes: 'close' follows
    session.on('close', () => {
      info.bound = false;
      state.sessions.delete(info.id);
      for (const attempt of own.outstanding) retryReceipt(attempt, info.id);
      own.outstanding.clear();
    });
    for (const [command, bindType] of Object.entries(BIND_TYPES)) {
      session.on(command, (pdu) => {
        if (info.bound) {
          session.send(pdu.response({ command_status: smpp.ESME_RALYBND }));
          return;
        }
        if (pdu.system_id !== systemId || pdu.password !== password) {
          session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
          return;
        }
        info.system_id = pdu.system_id;
        info.bind_type = bindType;
        info.bound = true;
        info.bound_at = new Date().toISOString();
        // SMPP 3.4 (5.2.1) allows 16 octets with the NUL: Jasmin refuses a longer one.
        session.send(pdu.response({ system_id: 'ivrauth-smsc' }));
        if (bindType !== 'transmitter') {
          const waiting = state.pending.filter((entry) => entry.systemId === info.system_id);
          state.pending = state.pending.filter((entry) => entry.systemId !== info.system_id);
          for (const entry of waiting) deliverReceipt({ ...entry, origin: own });
        }
      });
    }
    session.on('enquire_link', (pdu) => {
      info.enquire_links += 1;
      session.send(pdu.response());
    });
    session.on('unbind', (pdu) => {
      info.bound = false;
      session.send(pdu.response(), () => session.close());
    });
    session.on('submit_sm', (pdu) => {
      info.submits += 1;
      onSubmit(own, pdu);
    });
    session.on('data_sm', (pdu) => {
      info.submits += 1;
      onSubmit(own, pdu);
    });
    for (const command of ['submit_multi', 'query_sm', 'cancel_sm', 'replace_sm', 'unknown']) {
      session.on(command, (pdu) => session.send(pdu.response({ command_status: smpp.ESME_RINVCMDID })));
    }
  }

  const server = smpp.createServer(onSession);

  function validRules(body) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'rules: a mapping of suffix to rule';
    for (const [suffix, rule] of Object.entries(body)) {
      if (!/^[0-9]*$/.test(suffix)) return `rules: ${JSON.stringify(suffix)} is not a run of digits`;
      if (rule === null || typeof rule !== 'object') return `rules.${suffix}: not a mapping`;
      if ('receipt' in rule && !RECEIPTS.includes(rule.receipt)) return `rules.${suffix}.receipt: one of ${RECEIPTS}`;
      for (const key of Object.keys(rule)) {
        if (!(key in DEFAULT_RULE)) return `rules.${suffix}: unknown key ${key}`;
      }
    }
    return null;
  }

  function reply(res, status, body) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  const control = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => {
      raw += chunk;
    });
    req.on('end', () => {
      let body = {};
      if (raw) {
        try {
          body = JSON.parse(raw);
        } catch (e) {
          reply(res, 400, { error: 'body: not JSON' });
          return;
        }
      }
      const route = `${req.method} ${req.url}`;
      if (route === 'GET /messages') {
        reply(res, 200, state.records);
      } else if (route === 'GET /receipts') {
        reply(res, 200, state.receipts);
      } else if (route === 'GET /sessions') {
        const sessions = [...state.sessions.values()].filter((s) => s.info.bound).map((s) => s.info);
        reply(res, 200, sessions);
      } else if (route === 'GET /refused') {
        reply(res, 200, state.refused);
      } else if (route === 'GET /health') {
        reply(res, 200, { smpp_port: server.address().port, pid: process.pid });
      } else if (route === 'POST /rules') {
        const problem = validRules(body);
        if (problem) {
          reply(res, 400, { error: problem });
        } else {
          state.rules = body;
          reply(res, 200, { rules: state.rules });
        }
      } else if (route === 'POST /reset') {
        state.generation += 1;
        state.records = [];
        state.receipts = [];
        state.rules = {};
        state.pending = [];
        state.refused = [];
        state.refuseUntil = 0;
        fs.writeFileSync(recordFile, '');
        reply(res, 200, {});
      } else if (route === 'POST /drop') {
        const dropped = state.sessions.size;
        for (const s of state.sessions.values()) s.session.socket.destroy();
        reply(res, 200, { dropped });
      } else if (route === 'POST /refuse-binds') {
        const seconds = Number(body.seconds);
        if (!Number.isFinite(seconds) || seconds < 0) {
          reply(res, 400, { error: 'seconds: a number of seconds, 0 or more' });
        } else {
          state.refuseUntil = Date.now() + seconds * 1000;
          reply(res, 200, { until: new Date(state.refuseUntil).toISOString() });
        }
      } else {
        reply(res, 404, { error: `no route ${route}` });
      }
    });
  });

  server.on('error', (err) => {
    process.stderr.write(`smsc: SMPP listener: ${err.message}\n`);
    process.exit(1);
  });
  control.on('error', (err) => {
    process.stderr.write(`smsc: control listener: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(Number(smppPort), HOST, () => {
    control.listen(Number(controlPort), HOST, () => {
      const ports = `smpp=${server.address().port} control=${control.address().port}`;
      process.stdout.write(`listening ${ports} pid=${process.pid}\n`);
    });
  });
  const stop = () => {
    for (const s of state.sessions.values()) s.session.socket.destroy();
    server.close();
    control.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main(process.argv.slice(2));
