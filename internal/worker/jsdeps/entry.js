// The parts of the Web platform berth takes from well-kept reference
// implementations instead of writing them: WHATWG URL (jsdom's whatwg-url,
// which the URL Standard's own tests run against) and WHATWG Streams
// (web-streams-polyfill, derived from the Streams Standard's reference
// implementation). gen.go bundles this file to ../js/deps.js.
import {
  URL, URLSearchParams, basicURLParse, serializeURL, serializeURLOrigin, serializeHost, serializeInteger, serializePath,
} from "whatwg-url";
import {
  ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableByteStreamController,
  ReadableStreamDefaultController, ReadableStreamBYOBRequest, WritableStream, WritableStreamDefaultWriter,
  WritableStreamDefaultController, TransformStream, TransformStreamDefaultController,
  ByteLengthQueuingStrategy, CountQueuingStrategy,
} from "web-streams-polyfill";

// urlRecords is the URL Standard's parser and serializers, under berth's
// own URL class (fetch.js); not a global.
globalThis.__berthURLRecords = { basicURLParse, serializeURL, serializeURLOrigin, serializeHost, serializeInteger, serializePath };
globalThis.__berthDeps = {
  URL, URLSearchParams,
  ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableByteStreamController,
  ReadableStreamDefaultController, ReadableStreamBYOBRequest, WritableStream, WritableStreamDefaultWriter,
  WritableStreamDefaultController, TransformStream, TransformStreamDefaultController,
  ByteLengthQueuingStrategy, CountQueuingStrategy,
};
