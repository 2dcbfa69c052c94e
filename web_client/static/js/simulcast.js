// Simulcast as the browser sees it: the encodings the camera is published with, and the layer
// each remote tile asks the SFU for (docs/media.md, Simulcast and Bandwidth allocation).

/**
 * The camera goes out as simulcast (docs/media.md, Simulcast) so a weak ward gets a low layer
 * without lowering the others: three layers where the resolution allows (Chrome sends as many
 * as its height allows, keeping the lowest: three from 540 lines, two from 270), listed low to
 * high, the order the SFU numbers them in; one encoding below that. A screen share stays one
 * high-resolution encoding (it never comes here).
 * @param {number} height  the camera track's height
 * @returns {RTCRtpEncodingParameters[]|undefined}
 */
export function cameraEncodings(height) {
  if (height >= 540) {
    return [{ rid: "r0", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
            { rid: "r1", scaleResolutionDownBy: 2, maxBitrate: 450_000 },
            { rid: "r2", scaleResolutionDownBy: 1, maxBitrate: 1_200_000 }];
  }
  if (height >= 270) {
    return [{ rid: "r0", scaleResolutionDownBy: 2, maxBitrate: 200_000 },
            { rid: "r1", scaleResolutionDownBy: 1, maxBitrate: 700_000 }];
  }
  return undefined;
}
/**
 * The simulcast layer a remote tile needs (`media:layers`): the main tile of the speaker
 * view, or a grid of at most four, high; thumbnails and bigger grids low; a tile not shown
 * (hidden, or the page in the background) off.
 * @param {{layout: "grid"|"speaker", main: boolean, tiles: number, shown: boolean}} tile
 * @returns {"high"|"low"|"off"}
 */
export function layerWant({ layout, main, tiles, shown }) {
  if (!shown) return "off";
  if (layout === "speaker") return main ? "high" : "low";
  return tiles <= 4 ? "high" : "low";
}
