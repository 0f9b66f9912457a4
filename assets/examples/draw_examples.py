"""Draw the synthetic example images in assets/examples (no CIFAR-10 pixels): simple PIL drawings."""
from PIL import Image, ImageDraw, ImageFilter
import numpy as np

S = 256
from pathlib import Path

out = Path(__file__).resolve().parent  # run: python assets/examples/draw_examples.py

def sky(top=(90, 150, 230), bottom=(200, 225, 250)):
    a = np.linspace(0, 1, S)[:, None, None]
    arr = (np.array(top) * (1 - a) + np.array(bottom) * a) * np.ones((S, S, 3))
    return Image.fromarray(arr.astype(np.uint8))

# airplane: a jet against the sky
im = sky(); d = ImageDraw.Draw(im)
d.polygon([(70, 128), (180, 122), (205, 128), (180, 136), (70, 134)], fill=(235, 235, 240))  # fuselage
d.polygon([(115, 128), (150, 128), (120, 70), (108, 70)], fill=(200, 200, 210))  # upper wing
d.polygon([(115, 132), (150, 132), (120, 190), (108, 190)], fill=(190, 190, 200))  # lower wing
d.polygon([(72, 130), (88, 130), (70, 100), (62, 100)], fill=(200, 60, 60))  # tail fin
d.polygon([(72, 132), (86, 132), (66, 152), (60, 152)], fill=(190, 190, 200))
d.ellipse((185, 125, 197, 131), fill=(60, 80, 120))  # cockpit
im.filter(ImageFilter.SMOOTH).save(f"{out}/airplane.png")

# ship: a freighter on the sea, saved as a palette PNG
im = sky((150, 190, 230), (210, 230, 245)); d = ImageDraw.Draw(im)
d.rectangle((0, 160, S, S), fill=(30, 80, 140))
for y in range(168, S, 12):
    d.line((0, y, S, y + 3), fill=(60, 110, 170), width=2)
d.polygon([(30, 140), (230, 140), (205, 178), (50, 178)], fill=(40, 40, 45))  # hull
d.rectangle((150, 105, 200, 140), fill=(240, 240, 240))  # bridge
d.rectangle((165, 80, 177, 105), fill=(200, 60, 40))  # funnel
for x in range(50, 140, 22):
    d.rectangle((x, 118, x + 18, 140), fill=(180, 90, 40))  # containers
im.quantize(64).save(f"{out}/ship.png")

# automobile: a red car on a road, with a transparent background (RGBA)
im = Image.new("RGBA", (S, S), (0, 0, 0, 0)); d = ImageDraw.Draw(im)
d.rectangle((0, 190, S, S), fill=(90, 90, 95, 255))
d.rounded_rectangle((30, 120, 226, 180), radius=18, fill=(200, 30, 30, 255))  # body
d.polygon([(70, 122), (95, 85), (170, 85), (195, 122)], fill=(180, 25, 25, 255))  # cabin
d.polygon([(82, 120), (100, 92), (130, 92), (130, 120)], fill=(170, 210, 240, 255))  # windows
d.polygon([(136, 120), (136, 92), (165, 92), (185, 120)], fill=(170, 210, 240, 255))
for cx in (75, 185):
    d.ellipse((cx - 24, 158, cx + 24, 206), fill=(25, 25, 25, 255))
    d.ellipse((cx - 10, 172, cx + 10, 192), fill=(170, 170, 170, 255))
im.save(f"{out}/automobile.png")

# frog: a green frog on a leaf
im = Image.new("RGB", (S, S), (70, 50, 30)); d = ImageDraw.Draw(im)
d.ellipse((10, 60, 250, 250), fill=(60, 120, 40))  # leaf
d.ellipse((60, 110, 200, 210), fill=(110, 170, 60))  # body
d.ellipse((70, 80, 115, 125), fill=(110, 170, 60)); d.ellipse((145, 80, 190, 125), fill=(110, 170, 60))
d.ellipse((80, 88, 105, 113), fill=(240, 220, 60)); d.ellipse((155, 88, 180, 113), fill=(240, 220, 60))
d.ellipse((88, 95, 98, 106), fill=(10, 10, 10)); d.ellipse((163, 95, 173, 106), fill=(10, 10, 10))
d.arc((95, 140, 165, 180), 20, 160, fill=(40, 70, 20), width=4)
for x in (55, 180):
    d.ellipse((x, 180, x + 30, 215), fill=(100, 160, 55))
im.filter(ImageFilter.SMOOTH).save(f"{out}/frog.png")

# truck: a delivery truck, saved greyscale+colour (RGB) at a non-square size
W, H = 320, 220
im = Image.new("RGB", (W, H), (150, 200, 235)); d = ImageDraw.Draw(im)
d.rectangle((0, 170, W, H), fill=(80, 80, 80))
d.rectangle((30, 60, 200, 165), fill=(240, 240, 230))  # cargo box
d.rectangle((205, 95, 285, 165), fill=(30, 90, 170))  # cab
d.polygon([(215, 100), (265, 100), (280, 130), (215, 130)], fill=(180, 220, 245))  # window
for cx in (70, 160, 250):
    d.ellipse((cx - 20, 150, cx + 20, 190), fill=(20, 20, 20))
im.save(f"{out}/truck.png")
